"""Input checks and the padding policy shared by the ada-unet models.

A network with total stride ``m`` can only take images whose height and width are multiples
of ``m``. The models in this package either refuse other sizes with a clear
:class:`~ada_core.errors.InputError` (``pad="error"``, the default) or pad the image up to the
next multiple and crop the logits back to the input size (``pad="zeros" | "replicate" |
"reflect"``). Padding is split as evenly as possible between the two sides (the extra pixel,
if any, goes to the bottom / right), so the image stays centred in the network's field of view.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from ada_core import InputError, SegModel

__all__ = ["PadMode", "PAD_DESCRIPTION", "fit_input", "crop_output"]

PadMode = Literal["error", "zeros", "replicate", "reflect"]

PAD_DESCRIPTION = (
    "What to do with an image whose height or width is not a multiple of the network's total "
    "stride: 'error' raises an InputError naming the nearest valid size; 'zeros', 'replicate' "
    "or 'reflect' pad the image (split evenly between both sides) up to the next multiple and "
    "crop the logits back to the input size."
)


def fit_input(model: SegModel, x: Tensor, pad: PadMode) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Validate ``x`` for ``model`` and pad it when the policy allows.

    Only shapes are inspected (no device synchronisation).

    Args:
        model: the network; ``model.input_multiple`` is its total stride.
        x: ``(B, 1, H, W)`` floating images.
        pad: the padding policy (see module docstring).

    Returns:
        The (possibly padded) images ``(B, 1, H', W')`` and the padding ``(left, right, top,
        bottom)`` to remove from the output with :func:`crop_output`.

    Raises:
        InputError: wrong rank, channel count or dtype, or a size that is not a multiple of
            the stride while ``pad == "error"``.
    """
    owner = f"model {model.name!r}"
    if not isinstance(x, Tensor):
        raise InputError(f"{owner}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(
            f"{owner}: input must have shape (B, 1, H, W) (one channel), got {tuple(x.shape)}; "
            "add the channel axis with x.unsqueeze(1)"
        )
    if not x.is_floating_point():
        raise InputError(f"{owner}: input must be floating point, got {x.dtype}; use x.float()")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    m = int(model.input_multiple)
    if m <= 1 or (height % m == 0 and width % m == 0):
        return x, (0, 0, 0, 0)
    if pad == "error":
        try:
            model.check_input_size(height, width)
        except InputError as e:
            raise InputError(
                f"{e}; or let the model pad: set model.params.pad = 'replicate' (or 'zeros', "
                "'reflect')"
            ) from None
    dh, dw = -height % m, -width % m
    padding = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
    if pad == "reflect" and (max(padding[:2]) >= width or max(padding[2:]) >= height):
        raise InputError(
            f"{owner}: input {height}x{width} is too small for pad='reflect' to reach a multiple "
            f"of {m}; use pad='replicate' or 'zeros'"
        )
    mode = "constant" if pad == "zeros" else pad
    return F.pad(x, padding, mode=mode), padding


def crop_output(y: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
    """Remove ``padding = (left, right, top, bottom)`` from ``y (B, C, H', W')``."""
    left, right, top, bottom = padding
    if not any(padding):
        return y
    return y[..., top : y.shape[-2] - bottom, left : y.shape[-1] - right]
