"""Robustness by occlusion position: where zeroing a Z x Z square hurts each branch's model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

__all__ = ["save_position_maps"]


def save_position_maps(
    maps: Mapping[str, Tensor],
    size: int,
    path: Path,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """One heat map per branch: per occluded square, the DSC points lost against the
    un-occluded validation DSC (or the raw mean DSC when no reference is given).

    Args:
        maps: label -> ``(rows, cols)`` mean DSC per occlusion position (NaN: undefined).
        size: Z, the side of the occluded square in pixels.
        path: the PNG to write.
        reference: label -> validation DSC of the same checkpoint without occlusion.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if reference is not None:
        maps = {k: reference[k] - v for k, v in maps.items()}
    label_text = "DSC points lost" if reference is not None else "mean DSC %"
    labels = list(maps)
    cols = min(4, len(labels))
    rows = math.ceil(len(labels) / cols)
    values = [v for m in maps.values() for v in m.flatten().tolist() if v == v]
    lo, hi = (min(values), max(values)) if values else (0.0, 100.0)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows), squeeze=False)
    for ax, label in zip(axes.flat, labels):
        im = ax.imshow(maps[label].numpy(), cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.colorbar(
        im, ax=axes.ravel().tolist(), shrink=0.8, label=f"{label_text}, {size}x{size} zeroed"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
