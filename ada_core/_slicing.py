"""Slice geometry for ada_core.data: display orientation, resample + crop, crop centres,
intensity normalisation. Pure tensor functions on ``(Z, H, W)`` stacks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_centres", "display", "normalise", "resample_crop"]


def display(arr: np.ndarray) -> Tensor:
    """``(X, Y, Z)`` volume -> ``(Z, H=Y, W=X)`` slices, anterior up (rows = Y reversed)."""
    out = np.ascontiguousarray(arr.transpose(2, 1, 0)[:, ::-1, :])
    return torch.from_numpy(out)


def resample_crop(
    x: Tensor, out_hw: tuple[int, int], starts: Tensor, size: tuple[int, int], fill: Tensor,
    binary: bool,
) -> Tensor:
    """Crop ``size`` at ``starts (Z, 2)`` from ``x (Z, H, W)`` resized to ``out_hw``.

    Same as resizing the whole slice (bilinear, half-pixel centres, edges clamped; antialiased
    when shrinking) and cropping, but an enlargement samples only the cropped pixels. Pixels
    outside the resized slice take ``fill (Z,)``; ``binary`` thresholds at 0.5.
    """
    z, h, w = x.shape
    if (h, w) == out_hw:
        return _crop(x, starts, size, fill)
    if out_hw[0] < h or out_hw[1] < w:
        y = F.interpolate(x[:, None], size=out_hw, mode="bilinear", align_corners=False,
                          antialias=True)[:, 0]  # fmt: skip
        y = _crop(y, starts, size, fill)
    else:
        rows = starts[:, :1] + torch.arange(size[0])  # (Z, h') in the resized grid
        cols = starts[:, 1:] + torch.arange(size[1])  # (Z, w')
        gy = (2 * (rows + 0.5) / out_hw[0] - 1).float()[:, :, None].expand(z, *size)
        gx = (2 * (cols + 0.5) / out_hw[1] - 1).float()[:, None, :].expand(z, *size)
        grid = torch.stack([gx, gy], dim=-1)
        y = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[:, 0]  # fmt: skip
        inside = ((rows >= 0) & (rows < out_hw[0]))[:, :, None] & (
            (cols >= 0) & (cols < out_hw[1])
        )[:, None, :]
        y = torch.where(inside, y, fill[:, None, None].to(y.dtype))
    return (y >= 0.5 - 1e-4).float() if binary else y  # exact ties count as label in float32


def _centroids(m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-slice pixel count and centroid (row, col) of ``(Z, H, W)`` masks."""
    rows = torch.arange(m.shape[1], dtype=torch.float64)
    cols = torch.arange(m.shape[2], dtype=torch.float64)
    per_row, per_col = m.sum(2).double(), m.sum(1).double()  # exact counts in float32
    n = per_row.sum(1)
    safe = n.clamp(min=1)
    return n, (per_row * rows).sum(1) / safe, (per_col * cols).sum(1) / safe


def crop_centres(shape: tuple[int, int, int], masks: Sequence[Tensor]) -> Tensor:
    """``(Z, 2)`` crop centres (row, col) from ``masks`` in priority order.

    Per slice: the centroid of the first mask with pixels in that slice; a slice without any
    takes the volume centroid of the first non-empty mask; an unlabelled volume the image centre.
    """
    z, h, w = shape
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64).repeat(z, 1)
    stats = [_centroids(m) for m in masks]
    for n, r, c in stats:
        if n.sum() > 0:
            total = n.sum()
            centre[:] = torch.stack([(n * r).sum() / total, (n * c).sum() / total])
            break
    for n, r, c in reversed(stats):  # higher priority overwrites
        hit = n > 0
        centre[hit] = torch.stack([r, c], 1)[hit]
    return centre


def _crop(x: Tensor, starts: Tensor, size: tuple[int, int], fill: Tensor) -> Tensor:
    """Per-slice crops of ``(Z, H, W)`` at ``starts (Z, 2)``; outside pixels take ``fill (Z,)``."""
    z, h, w = x.shape
    rows = starts[:, :1] + torch.arange(size[0])  # (Z, h')
    cols = starts[:, 1:] + torch.arange(size[1])  # (Z, w')
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = x[
        torch.arange(z)[:, None, None],
        rows.clamp(0, h - 1)[:, :, None],
        cols.clamp(0, w - 1)[:, None, :],
    ]
    return torch.where(inside, out, fill[:, None, None].to(out.dtype))


def normalise(x: Tensor, how: str) -> Tensor:
    if how == "zscore":
        mean = x.mean((1, 2), keepdim=True)
        std = x.std((1, 2), keepdim=True, unbiased=False)
        return (x - mean) / torch.where(std > 1e-8, std, torch.ones_like(std))
    if how == "minmax":
        lo = x.amin((1, 2), keepdim=True)
        span = x.amax((1, 2), keepdim=True) - lo
        return (x - lo) / torch.where(span > 1e-8, span, torch.ones_like(span))
    return x
