"""The slice geometry of one volume, forwards (what :func:`ada_core.data.preprocess_volume`
does) and backwards (a model's crops back onto the volume's own voxel grid).

Forwards: a canonical ``(X, Y, Z)`` volume -> display slices ``(Z, H=Y, W=X)`` (rows = Y
reversed) -> in-plane resampling to ``preprocess.spacing`` (bilinear, half-pixel centres) ->
a ``size`` crop per slice around a centre (labels' centroids, else the image centre) ->
per-slice normalisation. Backwards: each crop is put back at its place in the resampled
slice (outside the crop: 0), resampled to the slice's own size with the same half-pixel
convention (antialiased when shrinking, so a probability becomes the mean over the voxel),
and the display transform is undone. The reorientation to canonical is undone by the caller
(:mod:`ada_core.predict`, with nibabel), which owns the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ada_core._slicing import crop_centres, display, normalise, resample_crop
from ada_core.data import PreprocessConfig
from ada_core.errors import InputError

__all__ = ["SliceGeometry", "from_display", "plan_geometry", "slices_to_volume", "to_crops",
           "to_volume"]


@dataclass(frozen=True)
class SliceGeometry:
    """How the slices of one volume were cut (everything needed to put them back).

    Attributes:
        shape: the canonical volume's ``(X, Y, Z)``.
        out_hw: the resampled slice size ``(rows, columns)``.
        starts: ``(Z, 2)`` int64 top-left corner of each slice's crop in the resampled slice.
        size: the crop ``(rows, columns)``.
        spacing: pixel size of the crops in mm ``(rows, columns)``.
    """

    shape: tuple[int, int, int]
    out_hw: tuple[int, int]
    starts: Tensor
    size: tuple[int, int]
    spacing: tuple[float, float]

    @property
    def display_hw(self) -> tuple[int, int]:
        """The slice size before resampling: ``(Y, X)``."""
        return self.shape[1], self.shape[0]


def plan_geometry(
    shape: Sequence[int], spacing: Sequence[float], config: PreprocessConfig,
    labels: Sequence[np.ndarray] = (),
) -> SliceGeometry:  # fmt: skip
    """The geometry :func:`~ada_core.data.preprocess_volume` uses for a volume.

    Args:
        shape: the canonical ``(X, Y, Z)``.
        spacing: its voxel size in mm ``(x, y, z)``.
        config: the preprocessing the model was trained with.
        labels: ``(X, Y, Z)`` masks whose centroids centre the crops, in priority order
            (training: the cord, then GM); none: every crop is centred on the image centre.

    Raises:
        InputError: ``shape`` is not 3 positive sizes or ``spacing`` not 3 positive numbers.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"volume shape must be 3 positive sizes (X, Y, Z), got {shape}")
    sp = [float(s) for s in spacing]
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"voxel size must be 3 positive numbers in mm, got {tuple(spacing)}")
    sx, sy = sp[0], sp[1]
    x, y, z = shape
    h, w = y, x
    t = config.spacing
    same = abs(sx - t) <= 1e-6 * t and abs(sy - t) <= 1e-6 * t
    out_hw = (h, w) if same else (max(1, round(h * sy / t)), max(1, round(w * sx / t)))
    scale = torch.tensor([out_hw[0] / h, out_hw[1] / w], dtype=torch.float64)
    masks = [display(np.asarray(m, dtype=np.float32)) for m in labels]
    centres = (crop_centres((z, h, w), masks) + 0.5) * scale - 0.5
    size = (int(config.size[0]), int(config.size[1]))
    starts = torch.floor(centres + 0.5).long() - torch.tensor([size[0] // 2, size[1] // 2])
    spacing_hw = (sy * h / out_hw[0], sx * w / out_hw[1])
    return SliceGeometry(shape, out_hw, starts, size, spacing_hw)


def to_crops(image: np.ndarray, geometry: SliceGeometry, normalize: str) -> Tensor:
    """The model's input crops ``(Z, H', W')`` float32 of a canonical ``(X, Y, Z)`` image."""
    if tuple(image.shape) != geometry.shape:
        raise InputError(f"image shape {image.shape} differs from the geometry's {geometry.shape}")
    x = display(np.asarray(image, dtype=np.float32))
    fill = x.amin((1, 2))
    crops = resample_crop(x, geometry.out_hw, geometry.starts, geometry.size, fill, False)
    return normalise(crops, normalize)


def _uncrop(crops: Tensor, geometry: SliceGeometry) -> Tensor:
    """Crops ``(Z, H', W')`` placed into zero slices of the resampled size ``out_hw``."""
    z = crops.shape[0]
    oh, ow = geometry.out_hw
    ch, cw = geometry.size
    canvas = crops.new_zeros(z, oh, ow)
    for i in range(z):  # a slice at a time: each crop has its own corner
        r0, c0 = (int(v) for v in geometry.starts[i])
        rs, re_ = max(r0, 0), min(r0 + ch, oh)
        cs, ce = max(c0, 0), min(c0 + cw, ow)
        if rs < re_ and cs < ce:
            canvas[i, rs:re_, cs:ce] = crops[i, rs - r0 : re_ - r0, cs - c0 : ce - c0]
    return canvas


def from_display(slices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ada_core._slicing.display`: ``(Z, H=Y, W=X)`` -> ``(X, Y, Z)``."""
    return np.ascontiguousarray(slices[:, ::-1, :].transpose(2, 1, 0))


def to_volume(crops: Tensor, geometry: SliceGeometry) -> np.ndarray:
    """Per-pixel values of the crops ``(Z, H', W')`` on the canonical ``(X, Y, Z)`` grid.

    Each voxel gets the bilinear (antialiased when the crops are finer than the voxels)
    interpolation of the crops at its centre; voxels outside every crop get 0.

    Raises:
        InputError: ``crops`` does not have the geometry's slice count and crop size.
    """
    want = (geometry.shape[2], *geometry.size)
    if tuple(crops.shape) != want:
        raise InputError(f"crops have shape {tuple(crops.shape)}; the geometry expects {want}")
    return slices_to_volume(_uncrop(crops.float().cpu(), geometry), geometry)


def slices_to_volume(canvas: Tensor, geometry: SliceGeometry) -> np.ndarray:
    """Resampled slices ``(Z, *out_hw)`` back on the canonical ``(X, Y, Z)`` grid (bilinear,
    antialiased when the slices are finer than the voxels)."""
    if tuple(canvas.shape) != (geometry.shape[2], *geometry.out_hw):
        raise InputError(f"slices have shape {tuple(canvas.shape)}; the geometry expects "
                         f"{(geometry.shape[2], *geometry.out_hw)}")  # fmt: skip
    canvas = canvas.float().cpu()
    hw = geometry.display_hw
    if geometry.out_hw != hw:
        shrink = geometry.out_hw[0] > hw[0] or geometry.out_hw[1] > hw[1]
        canvas = F.interpolate(canvas[:, None], size=hw, mode="bilinear", align_corners=False,
                               antialias=shrink)[:, 0]  # fmt: skip
    return from_display(canvas.numpy())
