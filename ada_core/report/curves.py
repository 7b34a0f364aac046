"""Figure 2: validation DSC per epoch, the standard phase once and the branches after it."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import MaxNLocator

from ada_core.report._figure import ReportFigure, branch_colors, new_figure
from ada_core.runfolder import Curve, RunFolder

__all__ = ["convergence_figure", "zoom_epochs"]


def zoom_epochs(n: int) -> int:
    """How many first ADA epochs the zoom panel shows: a quarter of them, 3 to 10."""
    return max(1, min(n, max(3, min(10, math.ceil(n / 4)))))


def _stack(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(epochs, seeds x epochs DSC over the common length, whether lengths differed)."""
    n = min(len(c.dsc) for c in curves)
    uneven = any(len(c.dsc) != n for c in curves)
    return curves[0].epoch[:n], np.stack([c.dsc[:n] for c in curves]), uneven


def _draw(ax, x, y, color, label, dashed) -> None:
    with np.errstate(all="ignore"):
        mean = np.nanmean(y, axis=0)
        lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
    ax.plot(x, mean, "--" if dashed else "-", color=color, lw=1.5, marker="o", ms=2.5, label=label)
    if y.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def convergence_figure(run: RunFolder) -> ReportFigure | None:
    """The standard phase, the ADA branches with cycle boundaries, and a zoom; None if no curve."""
    summary = run.summary
    colors = branch_colors(summary)
    std = [c for j in run.done("standard") if (c := run.curve(j)) is not None]
    branches: dict[str, list[Curve]] = {}
    for b in summary.branches:
        if b.kind != "standard":
            cs = [c for j in run.done(b.label) if (c := run.curve(j)) is not None]
            if cs:
                branches[b.label] = cs
    if not std and not branches:
        return None
    control = {b.label for b in summary.branches if b.control}
    fig = new_figure(12.5, 4.0)
    ax_std, ax_ada, ax_zoom = fig.subplots(1, 3, width_ratios=[1, 2.2, 1.3])
    uneven, n_seeds = [], {}
    if std:
        x, y, diff = _stack(std)
        _draw(ax_std, x, y, "black", f"standard (n = {y.shape[0]})", False)
        n_seeds["standard"] = y.shape[0]
        if diff:
            uneven.append("standard")
    ax_std.set_title("standard phase", fontsize=10)
    ax_std.set_xlabel("epoch (standard phase)")
    ax_std.set_ylabel("validation DSC (%)")
    stacks = {}
    for label, cs in branches.items():
        x, y, diff = _stack(cs)
        stacks[label] = (x, y)
        n_seeds[label] = y.shape[0]
        if diff:
            uneven.append(label)
        for ax in (ax_ada, ax_zoom):
            _draw(ax, x, y, colors[label], f"{label} (n = {y.shape[0]})", label in control)
    boundaries: list[int] = []
    if branches:
        first = max((c for cs in branches.values() for c in cs), key=lambda c: len(c.epoch))
        boundaries = [int(e) for e, a, b in zip(first.epoch[1:], first.cycle[:-1], first.cycle[1:],
                                                strict=True) if a != b]  # fmt: skip
    for e in boundaries:
        for ax in (ax_ada, ax_zoom):
            ax.axvline(e - 0.5, color="#999999", lw=0.7, ls=":", zorder=0)
    target = summary.convergence_target
    if target is not None:
        for ax in (ax_ada, ax_zoom):
            ax.axhline(target, color="#444444", lw=0.8, ls="--", zorder=0)
        ax_ada.annotate(f"target {target:.1f}", (0.01, target), xycoords=("axes fraction", "data"),
                        fontsize=7, va="bottom", color="#444444")  # fmt: skip
    ax_ada.set_title("ADA branches (dotted: cycle boundaries)", fontsize=10)
    ax_ada.set_xlabel("ADA epoch (counted over all cycles)")
    ax_ada.set_ylabel("validation DSC (%)")
    k = zoom_epochs(max((len(x) for x, _ in stacks.values()), default=1))
    ax_zoom.set_xlim(0.5, k + 0.5)
    inside = [y[:, :k] for _, y in stacks.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in inside]) if inside else np.array([])
    if finite.size:
        pad = max(0.5, 0.08 * float(finite.max() - finite.min()))
        ax_zoom.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad)
    ax_zoom.set_title(f"zoom: first {k} ADA epoch{'s' if k != 1 else ''}", fontsize=10)
    ax_zoom.set_xlabel("ADA epoch")
    ax_zoom.set_ylabel("validation DSC (%)")
    for ax in (ax_std, ax_ada, ax_zoom):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if branches:
        ax_ada.legend(fontsize=7, ncol=2, loc="lower right")
    if std:
        ax_std.legend(fontsize=7, loc="lower right")
    caption = _caption(n_seeds, boundaries, k, uneven, target)
    return ReportFigure("convergence", "Figure 2: convergence", caption, fig)


def _caption(n_seeds, boundaries, k, uneven, target) -> str:
    counts = ", ".join(f"{label} {n}" for label, n in n_seeds.items())
    text = (f"Validation DSC after every epoch. Lines: mean over seeds; band: minimum to maximum "
            f"over seeds (seeds per curve: {counts}). Dashed lines: controls.")
    if boundaries:
        starts = ", ".join(map(str, boundaries))
        text += f" Dotted verticals: a new ADA cycle starts at epochs {starts}."
    if target is not None:
        text += (f" Horizontal dashed line: the convergence target, {target:.2f} DSC "
                 "(see the convergence table).")
    text += f" Right panel: the first {k} ADA epochs enlarged, where the paper saw GradCam ahead."
    if uneven:
        text += f" Curves of unequal length cut to the shortest: {', '.join(uneven)}."
    return text
