"""The built-in mask builder ``window`` (the paper's ``build_mask``) and the erased-region IoU.

The maths lives in pure functions (:func:`window_boxes`, :func:`window_keep_mask`, and
:func:`erased_iou_matrix` in :mod:`ada_core._erased_iou`, re-exported here);
:class:`WindowMaskBuilder` only wraps them.

Window selection, for every image independently and all images at once:

1. Score every ``Z x Z`` window whose top-left corner lies on ``range(0, H - Z + 1, stride)`` x
   ``range(0, W - Z + 1, stride)`` by the sum of its saliency. With ``gt_policy="restore"`` or
   ``"avoid"`` only the saliency outside the ground truth counts; with ``"ignore"`` all of it.
   With ``stride > 1`` the last window need not reach the image border.
2. Keep only the *allowed* windows: ``restore``: windows with at least one pixel outside the
   ground truth (a window inside the ground truth would erase nothing); ``avoid``: windows that
   touch no ground-truth pixel; ``ignore``: every window.
3. Take the best allowed window. Ties go to the first window in row-major order (smallest row,
   then smallest column). Scores are summed in float64 (runs of doubling length, images in
   cache-sized blocks on the CPU); two scores that differ by at most ``1e-10`` times the sum
   of the absolute values of the image's scored saliency (the saliency step 1 counts) count
   as tied, so the choice does not depend on summation order (CPU vs GPU, an integral image
   or a loop). The sum of absolute values bounds the rounding error even for signed saliency
   whose plain sum is near zero.
4. For ``regions > 1`` repeat greedily: the next region is the best allowed window that does
   not overlap any window already chosen. An image runs out of regions when no such window is
   left; it then erases fewer regions.
5. Erase the chosen windows; with ``restore`` the ground-truth pixels inside them are kept.

When an image has no allowed window at all (ground truth everywhere, or touching every window
with ``avoid``), nothing is erased: its keep mask is all ones.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ada_core._erased_iou import erased_iou_matrix
from ada_core.errors import ConfigError, InputError
from ada_core.fieldtags import used_for
from ada_core.interfaces import ComponentConfig, MaskBuilder

__all__ = [
    "GtPolicy",
    "boxes_to_keep",
    "WindowConfig",
    "WindowMaskBuilder",
    "erased_iou_matrix",
    "window_boxes",
    "window_keep_mask",
]

GtPolicy = Literal["restore", "avoid", "ignore"]
_POLICIES = ("restore", "avoid", "ignore")
#: Relative tolerance under which two window scores count as tied (see the module docstring).
_TIE_RTOL = 1e-10
#: Pixels per block of images scored at once on the CPU (8 images of 200 x 200: ~2.5 MB a
#: float64 pass, within a core's share of the cache).
_CPU_BLOCK_PIXELS = 8 * 200 * 200


def _score_dtype(device: torch.device) -> torch.dtype:
    # float64 makes integral-image sums exact enough for the tie rule; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _along(x: Tensor, size: int, dim: int, op) -> Tensor:  # noqa: ANN001 - a torch binary op
    """``op``-reduction of every run of ``size`` consecutive elements along ``dim``, in
    ``O(log size)`` whole-tensor ops: runs of 1, 2, 4, ... elements are combined pairwise and
    ``size``'s binary digits pick which of them make up each run (exact for ``or``; a sum
    adds each run's own elements only, in a fixed order)."""
    n = x.shape[dim] - size + 1
    out, runs, span, k, offset = None, x, 1, size, 0
    while True:
        if k & 1:
            part = runs.narrow(dim, offset, n)
            out = part if out is None else op(out, part)
            offset += span
        k >>= 1
        if not k:
            return out
        m = runs.shape[dim] - span
        runs = op(runs.narrow(dim, 0, m), runs.narrow(dim, span, m))
        span *= 2


def _window_any(x: Tensor, size: int, stride: int) -> Tensor:
    """Whether each ``size x size`` window of bool ``x`` ``(B, H, W)`` holds a True pixel: two
    :func:`_along` passes on bytes, ~8x faster than a float integral image of the counts."""
    return _along(_along(x, size, -2, torch.logical_or), size, -1, torch.logical_or)[
        :, ::stride, ::stride
    ]


def _window_sums(x: Tensor, size: int, stride: int) -> Tensor:
    """Sums of every ``size x size`` window of ``x`` ``(B, H, W)`` whose corner lies on the
    ``stride`` grid -> ``(B, H', W')``: :func:`_along` over the columns, then the rows.

    ``O(log size)`` whole-tensor adds per axis instead of an integral image's two cumulative
    sums (which run element by element on the CPU); each sum adds the window's own values
    only, so its rounding stays within the tie tolerance (module docstring, step 3).
    """
    rows = _along(x, size, -1, torch.add)[:, :, ::stride]
    return _along(rows, size, -2, torch.add)[:, ::stride]


def _check_window_inputs(
    saliency: Tensor, ground_truth: Tensor, size: int, stride: int, regions: int, gt_policy: str
) -> None:
    owner = "window_keep_mask"
    for arg, t in (("saliency", saliency), ("ground_truth", ground_truth)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != 1:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise InputError(f"{owner}: {arg} must be a (B, 1, H, W) tensor, got {got}")
    if saliency.shape != ground_truth.shape:
        raise InputError(
            f"{owner}: saliency shape {tuple(saliency.shape)} differs from ground_truth shape "
            f"{tuple(ground_truth.shape)}; pass one saliency map per ground-truth mask"
        )
    # A finite sum proves every element finite; only an overflowing sum needs the full check.
    if not bool(torch.isfinite(saliency.sum())) and not bool(torch.isfinite(saliency).all()):
        raise InputError(f"{owner}: saliency contains NaN or infinite values; expected finite")
    if not torch.equal(ground_truth, ground_truth * ground_truth):  # x == x*x iff x in {0, 1}
        raise InputError(f"{owner}: ground_truth must be binary (0/1); threshold it first")
    for arg, value in (("size", size), ("stride", stride), ("regions", regions)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{owner}: {arg} must be an integer >= 1, got {value!r}")
    h, w = saliency.shape[-2:]
    if size > min(h, w):
        raise InputError(
            f"{owner}: window size Z={size} is larger than the image ({h}x{w}); use a size of at "
            f"most {min(h, w)} (mask.params.size)"
        )
    if gt_policy not in _POLICIES:
        raise InputError(f"{owner}: gt_policy must be one of {_POLICIES}, got {gt_policy!r}")


def window_boxes(
    saliency: Tensor,
    ground_truth: Tensor,
    size: int,
    stride: int = 1,
    regions: int = 1,
    gt_policy: GtPolicy = "restore",
) -> Tensor:
    """Top-left corners of the windows to erase, chosen as the module docstring describes.

    Args:
        saliency: ``(B, 1, H, W)`` finite saliency (any real dtype).
        ground_truth: ``(B, 1, H, W)`` masks in {0, 1}.
        size: window side ``Z`` (``<= min(H, W)``).
        stride: step between candidate windows.
        regions: number of non-overlapping windows per image.
        gt_policy: ``"restore"``, ``"avoid"`` or ``"ignore"``.

    Returns:
        ``(B, regions, 2)`` long (row, col), best region first; ``-1`` where an image has no
        allowed window left for that region.
    """
    _check_window_inputs(saliency, ground_truth, size, stride, regions, gt_policy)
    return _window_boxes(saliency, ground_truth, size, stride, regions, gt_policy)


def _window_boxes(
    saliency: Tensor, ground_truth: Tensor, size: int, stride: int, regions: int, gt_policy: str
) -> Tensor:
    """:func:`window_boxes` for inputs already validated, block by block (:func:`_blocks`)."""
    return _cat([_block_boxes(saliency[s], ground_truth[s], size, stride, regions, gt_policy)
                 for s in _blocks(saliency)])  # fmt: skip


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _blocks(images: Tensor) -> list[slice]:
    """The blocks of images scored at once: on the CPU about :data:`_CPU_BLOCK_PIXELS` pixels,
    so that a block's float64 passes stay in the cache (~2.5x faster than passes over a
    64 x 200 x 200 batch, 20 MB each); a GPU takes the batch at once. Each image's windows do
    not depend on the others, so the boxes are the same."""
    b, _, h, w = images.shape
    step = b if images.device.type != "cpu" else max(1, _CPU_BLOCK_PIXELS // (h * w))
    return [slice(i, i + step) for i in range(0, b, step)]


def _keep_and_boxes(saliency: Tensor, ground_truth: Tensor, size: int, stride: int,
                    regions: int, gt_policy: str) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`window_keep_mask` and :func:`window_boxes` for inputs already validated, block
    by block (a block's keep mask is made while its ground truth is in the cache)."""
    h, w = saliency.shape[-2:]
    one = torch.ones((), device=saliency.device)
    keeps, boxes = [], []
    for s in _blocks(saliency):
        found = _block_boxes(saliency[s], ground_truth[s], size, stride, regions, gt_policy)
        erase = _erased(found, h, w, size)
        # restore: inside a box keep the ground truth (validated 0/1: its value is the keep)
        keeps.append(torch.where(erase, ground_truth[s].to(torch.float32), one)
                     if gt_policy == "restore" else (~erase).float())  # fmt: skip
        boxes.append(found)
    return _cat(keeps), _cat(boxes)


def _block_boxes(
    saliency: Tensor, ground_truth: Tensor, size: int, stride: int, regions: int, gt_policy: str
) -> Tensor:
    """:func:`_window_boxes` of one block of images."""
    dtype = _score_dtype(saliency.device)
    outside = torch.logical_not(ground_truth[:, 0])  # validated 0/1: the pixels == 0
    sal = saliency[:, 0].to(dtype, copy=True)  # a copy: zeroed in place, never the caller's
    if gt_policy != "ignore":
        sal.mul_(outside)
    # Rounding errors scale with the magnitudes summed, not with the signed total (which
    # cancels to ~0 for signed saliency), so the tolerance scales with sum(|x|).
    tol = _TIE_RTOL * sal.abs().sum((-2, -1))[:, None]
    score = _window_sums(sal, size, stride)
    if gt_policy == "ignore":
        allowed = torch.ones_like(score, dtype=torch.bool)
    else:
        # restore: a window with a pixel outside the ground truth; avoid: one without any in it
        allowed = _window_any(outside, size, stride) if gt_policy == "restore" else \
            ~_window_any(~outside, size, stride)  # fmt: skip
    b, nh, nw = score.shape
    score = score.reshape(b, -1)
    allowed = allowed.reshape(b, -1)
    win_r = (torch.arange(nh, device=score.device) * stride).repeat_interleave(nw)
    win_c = (torch.arange(nw, device=score.device) * stride).repeat(nh)
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=score.device)
    boxes = torch.full((b, regions, 2), -1, dtype=torch.long, device=score.device)
    for k in range(regions):  # a loop over regions only (few), never over images or windows
        masked = torch.where(allowed, score, neg_inf)
        best = masked.amax(1, keepdim=True)
        found = best[:, 0] > neg_inf  # scores are finite: -inf only without an allowed window
        # argmax of 0/1 bytes picks the first 1: the first window (row-major) within tolerance.
        idx = (masked >= best - tol).view(torch.uint8).argmax(1)
        rc = torch.stack([win_r[idx], win_c[idx]], 1)
        boxes[:, k] = torch.where(found[:, None], rc, torch.full_like(rc, -1))
        if k + 1 < regions:
            overlap = ((win_r[None] - rc[:, :1]).abs() < size) & (
                (win_c[None] - rc[:, 1:]).abs() < size
            )
            allowed = allowed & ~(overlap & found[:, None])
    return boxes


def boxes_to_keep(
    boxes: Tensor, height: int, width: int, size: int, protect: Tensor | None = None
) -> Tensor:
    """Keep mask ``(B, 1, H, W)`` float32: 0 inside the ``(B, R, 2)`` boxes (``-1``: none).

    ``protect`` (``(B, 1, H, W)``, nonzero = keep) marks pixels that are never erased.
    """
    erase = _erased(boxes, height, width, size)
    if protect is None:
        return (~erase).float()
    return torch.where(erase, (protect != 0).float(), torch.ones((), device=boxes.device))


def _erased(boxes: Tensor, height: int, width: int, size: int) -> Tensor:
    """``(B, 1, H, W)`` bool: True inside the ``(B, R, 2)`` boxes (``-1``: none)."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    r, c = boxes[..., 0, None], boxes[..., 1, None]  # (B, R, 1); -1 never matches a pixel
    in_r = ((rows >= r) & (rows < r + size) & (r >= 0))[..., :, None]  # (B, R, H, 1)
    in_c = ((cols >= c) & (cols < c + size))[..., None, :]  # (B, R, 1, W)
    return in_r & in_c if boxes.shape[1] == 1 else (in_r & in_c).any(1, keepdim=True)


def window_keep_mask(
    saliency: Tensor,
    ground_truth: Tensor,
    size: int,
    stride: int = 1,
    regions: int = 1,
    gt_policy: GtPolicy = "restore",
) -> Tensor:
    """The paper's ``build_mask``: erase the most salient window(s) outside the ground truth.

    Args:
        saliency: ``(B, 1, H, W)`` finite saliency.
        ground_truth: ``(B, 1, H, W)`` masks in {0, 1}.
        size: window side ``Z``.
        stride: step between candidate windows.
        regions: number of non-overlapping windows to erase per image.
        gt_policy: ``"restore"`` (ground-truth pixels are never erased), ``"avoid"`` (only
            windows touching no ground truth) or ``"ignore"``.

    Returns:
        ``(B, 1, H, W)`` float32 keep mask in {0, 1} (0 = erase) on the saliency's device; all
        ones for an image with no allowed window.
    """
    _check_window_inputs(saliency, ground_truth, size, stride, regions, gt_policy)
    return _keep_and_boxes(saliency, ground_truth, size, stride, regions, gt_policy)[0]


class WindowConfig(ComponentConfig):
    size: int = Field(
        20, ge=1, description="Side Z of the square window to erase, in pixels (also the "
        "robustness square's side when train.robustness_size is unset).",
        json_schema_extra=used_for("erase", "robustness_square"),
    )
    stride: int = Field(
        1, ge=1, description="Step between candidate windows, in pixels.",
        json_schema_extra=used_for("erase"),
    )
    regions: int = Field(
        1, ge=1, description="Number of non-overlapping windows to erase, chosen greedily.",
        json_schema_extra=used_for("erase"),
    )
    gt_policy: GtPolicy = Field(
        "restore",
        description="Ground truth handling: 'restore' never erases ground-truth pixels; "
        "'avoid' only considers windows that touch no ground truth; 'ignore' treats it as "
        "background.",
        json_schema_extra=used_for("erase"),
    )
    fill: float = Field(
        0.0, allow_inf_nan=False, description="Value written into the erased pixels (finite), "
        "and by the context probe beyond train.context_margin_mm.",
        json_schema_extra=used_for("erase", "context_fill"),
    )


class WindowMaskBuilder(MaskBuilder):
    """Erase the ``Z x Z`` window(s) with the most saliency outside the ground truth.

    Counters: ``no_window`` (images with no allowed window; kept unchanged) and
    ``fewer_regions`` (images where fewer than ``regions`` windows fit).
    """

    name: ClassVar[str] = "window"
    Config = WindowConfig
    config: WindowConfig

    @property
    def fill(self) -> float:
        return self.config.fill

    @property
    def erase_size(self) -> int:
        return self.config.size

    def check_image_size(self, height: int, width: int) -> None:
        if self.config.size > min(height, width):
            raise ConfigError(
                f"mask builder {self.name!r}: mask.params.size = {self.config.size} is larger "
                f"than the {height}x{width} images (data.preprocess.size); set it to at most "
                f"{min(height, width)}"
            )

    def _build(self, saliency: Tensor, ground_truth: Tensor) -> Tensor:
        cfg = self.config
        h, w = saliency.shape[-2:]
        if cfg.size > min(h, w):
            raise InputError(
                f"mask builder {self.name!r}: size={cfg.size} is larger than the image "
                f"({h}x{w}); set mask.params.size to at most {min(h, w)}"
            )
        # build() has validated shapes, finiteness and binary ground truth.
        keep, boxes = _keep_and_boxes(
            saliency, ground_truth, cfg.size, cfg.stride, cfg.regions, cfg.gt_policy
        )
        n_found = (boxes[..., 0] >= 0).sum(1)
        # .item() is a host-device sync point; once per batch is cheap.
        self.counters["no_window"] += int((n_found == 0).sum().item())
        self.counters["fewer_regions"] += int(
            ((n_found > 0) & (n_found < cfg.regions)).sum().item()
        )
        return keep
