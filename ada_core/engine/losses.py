"""Training losses on logits (the sigmoid is inside the loss)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ada_core.errors import ConfigError

__all__ = ["LOSSES", "bce_loss", "make_loss", "soft_dice_loss"]


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - soft Dice`` over the whole batch (Keras-style ``dice_coef`` with smoothing 1).

    Args:
        logits: ``(B, 1, H, W)`` raw network outputs.
        target: ``(B, 1, H, W)`` masks in {0, 1}.
        smooth: added to numerator and denominator; keeps empty masks finite.

    Returns:
        Scalar float32 loss in ``[0, 1]``.
    """
    prob = torch.sigmoid(logits.float()).flatten()
    t = target.float().flatten()
    inter = (prob * t).sum()
    return 1 - (2 * inter + smooth) / (prob.sum() + t.sum() + smooth)


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of ``(B, 1, H, W)`` logits against {0, 1} targets."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def _dice_bce(logits: Tensor, target: Tensor) -> Tensor:
    return soft_dice_loss(logits, target) + bce_loss(logits, target)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "dice": soft_dice_loss,
    "bce": bce_loss,
    "dice+bce": _dice_bce,
}


def make_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss function called ``name`` (``train.loss``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"train.loss = {name!r}: valid losses are {sorted(LOSSES)}") from None
