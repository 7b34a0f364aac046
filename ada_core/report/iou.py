"""Figure 4: the mean first-cycle erased-region IoU between methods, diagonal masked."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from ada_core.runfolder import RunSummary
from ada_core.report._figure import ReportFigure, new_figure

__all__ = ["iou_figure"]


def iou_figure(summary: RunSummary) -> ReportFigure | None:
    """Annotated heat map of ``summary.iou``; None without one (fewer than two ADA branches)."""
    iou = summary.iou
    if iou is None or len(iou.names) < 2:
        return None
    n = len(iou.names)
    m = np.array([[np.nan if v is None else v for v in row] for row in iou.matrix], dtype=float)
    off = ~np.eye(n, dtype=bool) & np.isfinite(m)
    shown = np.ma.masked_where(~off, m)
    vmax = float(m[off].max()) if off.any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    cmap = colormaps["viridis"].with_extremes(bad="#e6e6e6")
    fig = new_figure(1.6 + 0.95 * n, 1.0 + 0.85 * n)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax)
    for i in range(n):
        for j in range(n):
            if i == j:
                text, color = "\u2014", "#666666"
            elif not np.isfinite(m[i, j]):
                text, color = "n/a", "#666666"
            else:
                text = f"{m[i, j]:.2f}"
                color = "black" if m[i, j] > 0.6 * vmax else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(n), iou.names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), iou.names, fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel("method")
    fig.colorbar(im, ax=ax, shrink=0.85, label="mean IoU of erased regions")
    vals = m[off]
    rng = f"{vals.min():.2f} to {vals.max():.2f}" if vals.size else "none defined"
    caption = (
        f"Mean intersection over union of the regions each method erased at the first ADA "
        f"cycle, over {iou.n_images} training images from {iou.n_replicates} replicate"
        f"{'s' if iou.n_replicates != 1 else ''} (off-diagonal range {rng}). The diagonal "
        f"(1 by definition) is masked so the colour scale, 0 to {vmax:.2f}, spans the "
        f"off-diagonal values."
    )
    return ReportFigure("iou", "Figure 4: erased-region IoU between methods", caption, fig)
