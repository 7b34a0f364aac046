"""The mean pairwise IoU of the erased regions of several methods (the paper's Figure 4).

Re-exported by :mod:`ada_core.masks`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ada_core.errors import InputError

__all__ = ["erased_iou_matrix"]


def erased_iou_matrix(keeps: dict[str, Tensor], chunk: int = 64) -> tuple[list[str], Tensor]:
    """Mean pairwise IoU of the erased regions of several methods (the paper's Figure 4).

    Args:
        keeps: method name -> ``(N, 1, H, W)`` keep mask in {0, 1} (0 = erased), all over the
            same ``N`` images in the same order.
        chunk: images processed at once (bounds memory).

    Returns:
        The names (in the dict's order) and an ``(M, M)`` float64 matrix whose ``[i, j]`` is the
        mean over the ``N`` images of ``|E_i & E_j| / |E_i | E_j|`` with ``E = (keep == 0)``.
        An image where both methods erase nothing counts as IoU 1 (the erased regions are
        equal); one erasing nothing and the other something counts as 0. The diagonal is 1.
    """
    if not isinstance(keeps, dict) or not keeps:
        raise InputError("erased_iou_matrix: keeps must be a non-empty dict name -> (N,1,H,W) mask")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"erased_iou_matrix: chunk must be an integer >= 1, got {chunk!r}")
    names = list(keeps)
    first = keeps[names[0]]
    for name, keep in keeps.items():
        if not isinstance(keep, Tensor) or keep.ndim != 4 or keep.shape[1] != 1:
            got = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep).__name__
            raise InputError(f"erased_iou_matrix: keeps[{name!r}] must be (N, 1, H, W), got {got}")
        if keep.shape != first.shape:
            raise InputError(
                f"erased_iou_matrix: keeps[{name!r}] has shape {tuple(keep.shape)} but "
                f"keeps[{names[0]!r}] has {tuple(first.shape)}; all must cover the same images"
            )
        if bool(((keep != 0) & (keep != 1)).any()):
            raise InputError(f"erased_iou_matrix: keeps[{name!r}] must be binary (0/1)")
    if first.shape[0] == 0:
        raise InputError("erased_iou_matrix: the keep masks cover no images (N = 0)")
    total = torch.zeros(len(names), len(names), dtype=torch.float64, device=first.device)
    for s in range(0, first.shape[0], chunk):  # bounds memory at (M, chunk, H*W)
        # float64: exact counts, and never TF32 (which the engine may enable for float32 matmuls).
        erased = torch.stack([(keeps[n][s : s + chunk] == 0).flatten(1) for n in names]).double()
        inter = torch.einsum("mnp,knp->mkn", erased, erased)
        area = erased.sum(-1)  # (M, n)
        union = area[:, None] + area[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
        total += iou.sum(-1)
    return names, total / first.shape[0]
