"""The robustness set of the paper's Algorithm 2, generated batch by batch on the device.

For every validation image and every position ``(i, j)`` of the grid
``range(0, H, Z) x range(0, W, Z)``, one copy of the image with the ``Z x Z`` square whose
top-left corner is ``(i, j)`` set to ``fill`` (0 in the paper). Squares in the last row or
column are clipped at the image border, so non-square images and sizes that do not divide the
image are covered exactly once. The ground-truth mask is not changed: the network must still
find the structure with part of its context missing.

The set has ``N * P`` images (``P = ceil(H / Z) * ceil(W / Z)``); :func:`iter_occlusions`
never holds more than ``batch_size`` of them, and keeps each copy's source image index and
occlusion position for per-position analysis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ada_core.errors import InputError

__all__ = ["OcclusionBatch", "iter_occlusions", "num_occlusions", "occlusion_grid"]


@dataclass(frozen=True)
class OcclusionBatch:
    """One batch of the robustness set.

    Attributes:
        images: ``(b, 1, H, W)`` occluded copies.
        masks: ``(b, 1, H, W)`` their (unchanged) ground-truth masks.
        image_index: ``(b,)`` long, index of the source image in the input batch.
        position: ``(b, 2)`` long, (row, col) of the occluding square's top-left corner.
    """

    images: Tensor
    masks: Tensor
    image_index: Tensor
    position: Tensor


def _check_size(height: int, width: int, size: int) -> None:
    for arg, value in (("height", height), ("width", width), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"occlusion_grid: {arg} must be an integer >= 1, got {value!r}")


def occlusion_grid(
    height: int, width: int, size: int, device: torch.device | str | None = None
) -> Tensor:
    """Top-left corners of the occluding squares, in row-major order.

    Args:
        height: image height ``H``.
        width: image width ``W``.
        size: square side ``Z``; a ``Z`` larger than the image gives the single position (0, 0)
            and a square clipped to the whole image.
        device: where to put the result.

    Returns:
        ``(P, 2)`` long tensor of (row, col), ``P = ceil(H / Z) * ceil(W / Z)``.
    """
    _check_size(height, width, size)
    rows = torch.arange(0, height, size, device=device)
    cols = torch.arange(0, width, size, device=device)
    return torch.cartesian_prod(rows, cols).reshape(-1, 2)


def num_occlusions(num_images: int, height: int, width: int, size: int) -> int:
    """Number of images in the robustness set of ``num_images`` images of ``H x W``."""
    _check_size(height, width, size)
    return num_images * (-(-height // size)) * (-(-width // size))


def iter_occlusions(
    images: Tensor,
    masks: Tensor,
    size: int,
    batch_size: int,
    fill: float = 0.0,
) -> Iterator[OcclusionBatch]:
    """Yield the robustness set of ``images`` in batches, image-major then grid order.

    Args:
        images: ``(N, 1, H, W)`` validation images (any device).
        masks: ``(N, 1, H, W)`` their ground-truth masks.
        size: square side ``Z``.
        batch_size: occluded copies per batch (the last batch may be smaller).
        fill: value written into the square (the paper uses 0).

    Yields:
        :class:`OcclusionBatch` on the images' device. Copy ``t`` (counting from 0 over the
        whole set) is image ``t // P`` occluded at grid position ``t % P``.

    Raises:
        InputError: at the call (not at the first batch) for bad shapes or sizes.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"iter_occlusions: images must be a (N, 1, H, W) tensor, got {got}")
    if not isinstance(masks, Tensor) or masks.shape != images.shape:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise InputError(
            f"iter_occlusions: masks must have the images' shape {tuple(images.shape)}, got {got}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"iter_occlusions: batch_size must be an integer >= 1, got {batch_size!r}")
    grid = occlusion_grid(images.shape[2], images.shape[3], size, device=images.device)
    return _generate(images, masks, grid, size, batch_size, fill)


def _generate(
    images: Tensor, masks: Tensor, grid: Tensor, size: int, batch_size: int, fill: float
) -> Iterator[OcclusionBatch]:
    n, _, h, w = images.shape
    p = grid.shape[0]
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    for start in range(0, n * p, batch_size):
        t = torch.arange(start, min(start + batch_size, n * p), device=images.device)
        image_index = t // p
        position = grid[t % p]
        r, c = position[:, :1], position[:, 1:]
        in_r = (rows >= r) & (rows < r + size)  # (b, H)
        in_c = (cols >= c) & (cols < c + size)  # (b, W)
        square = (in_r[:, :, None] & in_c[:, None, :])[:, None]
        occluded = images[image_index].masked_fill(square, fill)
        yield OcclusionBatch(occluded, masks[image_index], image_index, position)
