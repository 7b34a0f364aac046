"""Argument checks of :mod:`ada_core.metrics`: masks binary and of one shape, spacing in mm,
the options known. Each raises :class:`~ada_core.errors.InputError` naming the function."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ada_core.errors import InputError

__all__ = ["check_masks", "check_options", "check_spacing", "is_binary"]


def check_masks(pred: Tensor, target: Tensor, owner: str) -> None:
    for arg, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != 1:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise InputError(f"{owner}: {arg} must be a (B, 1, H, W) tensor, got {got}")
        if not is_binary(t):
            raise InputError(
                f"{owner}: {arg} must be binary (0/1 or bool); threshold probabilities first, "
                f"e.g. (torch.sigmoid(logits) > 0.5)"
            )
    if pred.shape != target.shape:
        raise InputError(
            f"{owner}: pred shape {tuple(pred.shape)} differs from target shape "
            f"{tuple(target.shape)}"
        )


def is_binary(t: Tensor) -> bool:
    """Whether every value of ``t`` is 0 or 1, in two reductions (NaN fails the range check).

    Within [0, 1] a value is 0 or 1 exactly when its fractional part is 0; two reductions are
    several times cheaper on CPU than elementwise comparisons with 0 and 1.
    """
    if t.dtype == torch.bool or t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    if not (bool(lo >= 0) and bool(hi <= 1)):  # host-device sync points
        return False
    return not t.is_floating_point() or float(t.frac().amax()) == 0.0


def check_spacing(spacing: Tensor | Sequence[float], batch: int, ndim: int, owner: str) -> Tensor:
    """Return spacing as a ``(batch, ndim)`` tensor, broadcasting a single ``(ndim,)`` value."""
    t = torch.as_tensor(spacing, dtype=torch.float64)
    if t.ndim == 1 and t.shape[0] == ndim:
        t = t.expand(batch, ndim)
    if t.shape != (batch, ndim):
        raise InputError(
            f"{owner}: spacing must have shape ({batch}, {ndim}) (millimetres per axis) or "
            f"({ndim},), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all() & (t > 0).all()):
        raise InputError(f"{owner}: spacing must be finite and > 0 mm, got {t.tolist()}")
    return t


def check_options(hausdorff: str, empty_policy: str, owner: str) -> None:
    if hausdorff not in ("boundary", "legacy"):
        raise InputError(f"{owner}: hausdorff must be 'boundary' or 'legacy', got {hausdorff!r}")
    if empty_policy not in ("nan", "bounded"):
        raise InputError(f"{owner}: empty_policy must be 'nan' or 'bounded', got {empty_policy!r}")
