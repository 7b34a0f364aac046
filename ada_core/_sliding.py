"""Sliding-window inference over whole slices, as nnU-Net does, and a cord finder built on it.

Each axial slice is resampled to the model's spacing (as in training) and covered by tiles of
the model's crop size that overlap by ``overlap`` (nnU-Net's ``tile_step_size = 0.5``); each
tile is normalised as a training crop is, and the tiles' probabilities are averaged with a
Gaussian importance map (sigma = 1/8 of the tile, nnU-Net's default) so that a pixel counts
most where it is near a tile's centre. :func:`locate` turns that map into the region whose
centroids centre the crops, as a cord mask does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ada_core._geometry import SliceGeometry, slices_to_volume
from ada_core._slicing import _crop, display, normalise

__all__ = ["gaussian_map", "locate", "sliding_window", "tile_starts"]


def gaussian_map(size: tuple[int, int], sigma_scale: float = 1 / 8) -> Tensor:
    """``(h, w)`` float32 importance of each tile pixel: a Gaussian of ``sigma_scale x size``
    centred on the tile, 1 at its maximum, never 0 (nnU-Net's ``compute_gaussian``)."""
    axes = []
    for n in size:
        i = torch.arange(n, dtype=torch.float64)
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(torch.exp(-((i - (n - 1) / 2) ** 2) / (2 * sigma**2)))
    g = axes[0][:, None] * axes[1][None, :]
    g = g / g.max()
    return g.clamp(min=float(g[g > 0].min())).float()


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """First pixels of the tiles covering ``length`` with at least ``overlap`` shared, evenly
    spread, the first at 0 and the last ending at ``length`` (nnU-Net's ``compute_steps``); a
    slice shorter than a tile gets one tile centred on it (padded)."""
    if length <= tile:
        return [-((tile - length) // 2)]
    step = max(tile * (1 - overlap), 1)
    n = int(np.ceil((length - tile) / step)) + 1
    return [int(round(v)) for v in np.linspace(0, length - tile, n)]


def sliding_window(
    predict: Callable[[Tensor], Tensor], image: np.ndarray, geometry: SliceGeometry,
    normalize: str | Callable[[Tensor], Tensor], *, overlap: float = 0.5, batch_size: int = 16,
) -> np.ndarray:  # fmt: skip
    """Probabilities of a canonical ``(X, Y, Z)`` image from overlapping tiles of each slice.

    Args:
        predict: ``(B, 1, h, w)`` crops -> ``(B, h, w)`` probabilities on the CPU.
        image: the canonical volume.
        geometry: its slice geometry (:func:`~ada_core._geometry.plan_geometry`); only
            ``out_hw`` and ``size`` are used: the tiles cover the whole resampled slice.
        normalize: the per-crop normalisation of training (a ``normalize`` name, applied to
            each tile), or a per-volume standardisation: a function of the ``(Z, h, w)``
            stack of one tile position's tiles of every slice (a box through the volume, as
            training's statistics come from the box of crops around the cord).
        overlap: the fraction of a tile its neighbour shares, in [0, 1).
        batch_size: tiles per forward pass.

    Returns:
        ``(X, Y, Z)`` float32 probabilities.
    """
    x = display(np.asarray(image, dtype=np.float32))
    fill = x.amin((1, 2))  # what training pads a crop with
    oh, ow = geometry.out_hw
    if (oh, ow) != tuple(x.shape[1:]):
        shrink = oh < x.shape[1] or ow < x.shape[2]
        x = F.interpolate(x[:, None], size=(oh, ow), mode="bilinear", align_corners=False,
                          antialias=shrink)[:, 0]  # fmt: skip
    th, tw = geometry.size
    corners = torch.tensor([(r, c) for r in tile_starts(oh, th, overlap)
                            for c in tile_starts(ow, tw, overlap)])  # fmt: skip
    g = gaussian_map((th, tw))
    out = torch.zeros(x.shape[0], oh, ow)
    z_all = x.shape[0]
    tiles = torch.stack([_crop(x[z].expand(len(corners), oh, ow), corners, (th, tw),
                               fill[z].expand(len(corners))) for z in range(z_all)])  # fmt: skip
    if callable(normalize):  # (Z, C, h, w): one region per tile position, through the volume
        tiles = torch.stack([normalize(tiles[:, c]) for c in range(len(corners))], 1)
    for z in range(z_all):
        one = tiles[z] if callable(normalize) else normalise(tiles[z], normalize)
        probs = torch.cat([predict(one[i : i + batch_size, None])
                           for i in range(0, len(one), batch_size)])  # fmt: skip
        acc, weight = torch.zeros(oh, ow), torch.zeros(oh, ow)
        for (r0, c0), p in zip(corners.tolist(), probs, strict=True):
            rs, re_, cs, ce = max(r0, 0), min(r0 + th, oh), max(c0, 0), min(c0 + tw, ow)
            acc[rs:re_, cs:ce] += (p * g)[rs - r0 : re_ - r0, cs - c0 : ce - c0]
            weight[rs:re_, cs:ce] += g[rs - r0 : re_ - r0, cs - c0 : ce - c0]
        out[z] = acc / weight
    return np.clip(slices_to_volume(out, geometry), 0.0, 1.0).astype(np.float32)


def locate(prob: np.ndarray, threshold: float = 0.5, grow: int = 3) -> np.ndarray | None:
    """Where the sliding window found the grey matter, as the ``{0, 1}`` float32 region whose
    centroids centre the crops, or None when nothing reaches ``threshold``.

    The region is the largest 3-D connected part of ``prob >= threshold`` (stray detections
    elsewhere in the field of view are dropped), grown by ``grow`` voxels (6-connected, so
    also into the neighbouring slices): its per-slice centroid then varies smoothly along the
    cord, as a cord mask's does, instead of following each slice's own detection.
    """
    from scipy import ndimage

    found, n = ndimage.label(prob >= threshold)
    if n == 0:
        return None
    sizes = np.bincount(found.ravel())[1:]
    region = found == 1 + int(np.argmax(sizes))
    if grow:
        region = ndimage.binary_dilation(region, iterations=grow)
    return region.astype(np.float32)
