"""``report.html``: one self-contained page per run (tables, convergence, IoU, samples).

Written at the end of every ``ada compare`` / ``ada train`` and again by ``ada report RUN``.
Figures are embedded as base64 PNG, so the file can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ada_core.errors import DataError

__all__ = ["save_iou_plot", "write_report"]

_FIGURES = (
    ("convergence.png", "Convergence: validation DSC per epoch"),
    ("iou.png", "First-cycle erased-region IoU between methods (the paper's Figure 4)"),
    ("samples.png", "First-cycle saliency and erased window (cyan) per method"),
    ("robustness_positions.png", "Robustness by position: DSC points lost when each square is zeroed"),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
img { max-width: 100%; border: 1px solid #ddd; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
"""


def save_iou_plot(names: list[str], matrix: list[list[float]], path: Path) -> Path:
    """Heat map of the IoU matrix with the values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * n, 0.8 + 0.8 * n))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 else "black")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from ``summary.txt`` (interim page until the full report).

    Raises:
        DataError: when ``run_dir`` holds no ``summary.json`` (not an aggregated run).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise DataError(
            f"{run_dir}: no summary.json, so not a finished run folder; run `ada compare` "
            "first (or `ada aggregate RUN`)"
        )
    text = (run_dir / "summary.txt").read_text(encoding="utf-8")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>ADA {html.escape(run_dir.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>ADA run {html.escape(run_dir.name)}</h1><pre>{html.escape(text)}</pre></body></html>\n"
    )
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
