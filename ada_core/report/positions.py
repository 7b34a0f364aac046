"""Robustness by position: the signed DSC change when each Z x Z square is zeroed."""

from __future__ import annotations

import math
import warnings

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from ada_core.report._figure import ReportFigure, new_figure
from ada_core.runfolder import RunFolder

__all__ = ["position_figure"]


def _edges(cells: int, size: int, pixels: int, step: float) -> np.ndarray:
    """Cell edges in mm; the last square is clipped to the image, as in Algorithm 2."""
    return np.minimum(np.arange(cells + 1) * size, pixels) * step


def position_figure(run: RunFolder) -> ReportFigure | None:
    """One panel per branch over the mean image of the reported part; None without positions."""
    maps: dict[str, list[np.ndarray]] = {}
    images: dict[str, np.ndarray] = {}
    spacing, size, part = None, None, None
    for b in run.summary.branches:
        for job in run.done(b.label):
            ev = run.evaluation(job)
            if ev is None or ev.positions is None:
                continue
            pos = ev.positions
            cells = [[np.nan if v is None else v for v in row] for row in pos.dsc_change]
            grid = np.array(cells, dtype=float)
            maps.setdefault(b.label, []).append(grid)
            size = pos.size
            spacing = spacing or ev.spacing_mm
            part = part or ev.report_part
            if job.fold not in images and (img := run.mean_image(job)) is not None:
                images[job.fold] = img  # one per fold: the folds report different parts
    shapes = {g.shape for gs in maps.values() for g in gs}
    if not maps or len(shapes) != 1:
        if len(shapes) > 1:
            run.note(f"robustness grids of different shapes {sorted(shapes)}: the "
                             "robustness map is not drawn")  # fmt: skip
        return None
    means = {}
    for k, v in maps.items():
        stack = np.stack(v)
        with warnings.catch_warnings():  # a square undefined in every replicate stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means[k] = np.nanmean(stack, axis=0)
    rows, cols = next(iter(shapes))
    same = len({i.shape for i in images.values()}) == 1
    image = np.mean(np.stack(list(images.values())), axis=0) if images and same else None
    h, w = image.shape if image is not None else (rows * size, cols * size)
    sy, sx = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    unit = "mm" if spacing else "px"
    ye, xe = _edges(rows, size, h, sy), _edges(cols, size, w, sx)
    finite = np.concatenate([m[np.isfinite(m)] for m in means.values()])
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-(lim or 1.0), vmax=lim or 1.0)
    ncol = min(4, len(means))
    nrow = math.ceil(len(means) / ncol)
    fig = new_figure(0.9 + 2.9 * ncol, 0.5 + 2.7 * nrow)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    mesh = None
    for ax, (label, m) in zip(axes.flat, means.items()):
        if image is not None:
            ax.imshow(image, cmap="gray", extent=(0, w * sx, h * sy, 0), interpolation="nearest")
        mesh = ax.pcolormesh(xe, ye, m, cmap="RdBu", norm=norm, alpha=0.6, edgecolors="white",
                             linewidth=0.3)  # fmt: skip
        ax.set_xlim(0, w * sx)
        ax.set_ylim(h * sy, 0)
        ax.set_aspect("equal")
        ax.set_title(f"{label} (n = {len(maps[label])})", fontsize=9)
        ax.set_xlabel(f"x ({unit})", fontsize=8)
        ax.set_ylabel(f"y ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(means):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.7 if nrow == 1 else 0.6,
                 label=f"DSC change (points), {size}\u00d7{size} px square zeroed")  # fmt: skip
    caption = (
        f"For every position of a {size}\u00d7{size}-pixel zeroed square (Algorithm 2), the "
        f"signed change in DSC against the same checkpoint without occlusion, averaged over "
        f"the slices of the reported part ({part or 'unknown'}) and over replicates (n per "
        f"panel); blue: DSC rose, red: DSC fell, white: no change (scale \u00b1{lim:.2f} "
        f"points). Drawn over the mean image of that part"
        + (f"; axes in mm ({sx:g} \u00d7 {sy:g} mm pixels)." if spacing else
           "; axes in pixels (the scored sets recorded no spacing_mm).")
    )  # fmt: skip
    if image is None:
        caption += " The mean image is missing, so the squares are drawn alone."
    return ReportFigure("positions", "Robustness by position", caption, fig)
