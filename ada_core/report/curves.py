"""Convergence: validation DSC per epoch of every branch (the paper's convergence figures).

The paper's main finding is about speed, not the end point: all methods end alike, GradCam
gets there fastest. So besides the curves, the summary carries two numbers per branch:

- ``epochs_to_target``: the first ADA epoch whose validation DSC reaches ``target``, a common
  threshold for all branches (``fraction`` of the best validation DSC any branch reached);
  None when the branch never reaches it.
- ``mean_dsc``: the mean validation DSC over the branch's epochs (the area under its curve
  divided by its length): higher means better earlier.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["convergence", "format_convergence", "read_curve", "save_convergence_plot"]


def read_curve(metrics_jsonl: Path, key: str = "dsc_mean") -> list[float]:
    """Validation ``key`` per epoch from a phase's ``metrics.jsonl``, in epoch order."""
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    rows.sort(key=lambda r: r["epoch"])
    values = [r["metrics"].get(key) for r in rows]
    return [math.nan if v is None else float(v) for v in values]  # JSON null: undefined


def convergence(curves: Mapping[str, Sequence[float]], fraction: float = 0.95) -> dict[str, Any]:
    """Epochs to a common DSC target and the mean DSC of each branch's curve.

    Args:
        curves: branch label -> validation DSC per ADA epoch.
        fraction: the target is ``fraction`` x the best DSC of all branches.

    Returns:
        ``{"target": float, "fraction": fraction, "branches": {label: {"epochs_to_target":
        int | None, "mean_dsc": float}}}``.
    """
    finite = [v for c in curves.values() for v in c if not math.isnan(v)]
    target = fraction * max(finite) if finite else math.nan
    out: dict[str, Any] = {}
    for label, curve in curves.items():
        hit = next((i for i, v in enumerate(curve, start=1) if v >= target), None)
        vals = [v for v in curve if not math.isnan(v)]
        out[label] = {
            "epochs_to_target": hit,
            "mean_dsc": sum(vals) / len(vals) if vals else math.nan,
        }
    return {"target": target, "fraction": fraction, "branches": out}


def format_convergence(conv: Mapping[str, Any]) -> str:
    """The convergence numbers as a plain-text table."""
    target = conv["target"]
    head = f"Convergence: ADA epochs until validation DSC >= {target:.2f} "
    head += f"({conv['fraction']:.0%} of the best branch), mean DSC over the branch's epochs"
    width = max([len(k) for k in conv["branches"]] + [6])
    lines = [head, f"{'branch'.ljust(width)}  epochs to target  mean DSC %"]
    for label, row in conv["branches"].items():
        hit = row["epochs_to_target"]
        mean = row["mean_dsc"]
        lines.append(
            f"{label.ljust(width)}  {('never' if hit is None else str(hit)).ljust(16)}  "
            f"{'n/a' if math.isnan(mean) else f'{mean:.2f}'}"
        )
    return "\n".join(lines)


def save_convergence_plot(
    standard: Sequence[float], curves: Mapping[str, Sequence[float]], path: Path
) -> Path:
    """Validation DSC against epoch: the standard phase, then every branch from its end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    n0 = len(standard)
    ax.plot(range(1, n0 + 1), standard, color="black", lw=1.5, label="standard")
    for label, curve in curves.items():
        style = "--" if label in ("none", "random") else "-"
        ax.plot(range(n0 + 1, n0 + len(curve) + 1), curve, style, lw=1.2, label=label)
    if n0:
        ax.axvline(n0 + 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("epoch (standard phase, then ADA cycles)")
    ax.set_ylabel("validation DSC %")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
