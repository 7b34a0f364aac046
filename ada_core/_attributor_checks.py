"""The checks of :class:`~ada_core.interfaces.Attributor`'s template method, as pure functions.

Kept apart from the interface so that ``interfaces.py`` reads as the contract and this module
as the enforcement: who is attributing (:func:`owner_of`), how members share passes
(:func:`share_groups`) and what a saliency map must be (:func:`check_saliency`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ada_core.errors import ContractError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from ada_core.interfaces import Attributor

__all__ = ["check_group_size", "check_members", "check_saliency", "owner_of", "share_groups"]


def owner_of(attributors: Sequence[Attributor]) -> str:
    """``"attributor 'a'"`` or ``"attributors 'a', 'b'"``, for error messages."""
    names = ", ".join(repr(a.name) for a in attributors)
    return f"attributor {names}" if len(attributors) == 1 else f"attributors {names}"


def share_groups(attributors: Sequence[Attributor]) -> list[list[int]]:
    """Indices grouped by ``share_key`` in first-seen order; a ``None`` key stays alone."""
    groups: dict[object, list[int]] = {}
    for i, a in enumerate(attributors):
        key = type(a).share_key
        groups.setdefault(("alone", i) if key is None else ("shared", key), []).append(i)
    return list(groups.values())


def check_members(attributors: Sequence[object], base: type) -> None:
    """Raise InputError unless every member is an instance of ``base`` (the Attributor ABC)."""
    for i, a in enumerate(attributors):
        if not isinstance(a, base):
            raise InputError(
                f"attribute_group: attributors[{i}] must be an Attributor, got "
                f"{type(a).__name__}; build it with registry.attributors.build(name)"
            )


def check_group_size(maps: object, members: Sequence[Attributor]) -> list[Tensor]:
    """The list a ``_attribute_many`` returned, or ContractError when it has the wrong length."""
    maps = list(maps) if isinstance(maps, (list, tuple)) else maps
    if not isinstance(maps, list) or len(maps) != len(members):
        got = f"{len(maps)} maps" if isinstance(maps, list) else type(maps).__name__
        raise ContractError(
            f"{type(members[0]).__name__}._attribute_many returned {got} for "
            f"{len(members)} attributors ({', '.join(repr(a.name) for a in members)}); it must "
            "return one (B, 1, H, W) map per attributor, in the order given"
        )
    return maps


def _samples(bad: Tensor) -> str:
    """``"samples [0, 3] of 8"`` for a ``(B, ...)`` bool tensor of offending pixels."""
    rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
    shown = rows if len(rows) <= 8 else [*rows[:8], "..."]
    return f"sample(s) {shown} of {bad.shape[0]}"


def check_saliency(saliency: object, images: Tensor, owner: str) -> Tensor:
    """Return ``saliency`` detached as float32, or raise ContractError naming ``owner``.

    Args:
        saliency: what the attributor returned; must be a floating ``(B, 1, H, W)`` tensor on
            the images' device, finite and ``>= 0``.
        images: ``(B, 1, H, W)`` the attributed images (shape and device reference).
        owner: who returned it, e.g. ``"attributor 'gradcam'"``.

    Returns:
        ``(B, 1, H, W)`` float32 saliency.

    Raises:
        ContractError: the map has the wrong type, shape, dtype or device, or holds negative,
            NaN or infinite values (the message names the attributor and the samples).
    """
    expected = tuple(images.shape)
    if not isinstance(saliency, Tensor):
        raise ContractError(
            f"{owner} returned {type(saliency).__name__}, expected a {expected} tensor"
        )
    if saliency.shape != images.shape:
        raise ContractError(
            f"{owner} returned saliency of shape {tuple(saliency.shape)}, expected {expected} "
            "(one single-channel map per image, at the input resolution)"
        )
    if not saliency.is_floating_point():
        raise ContractError(
            f"{owner} returned saliency of dtype {saliency.dtype}, expected a floating tensor "
            "(it is handed on as float32)"
        )
    if saliency.device != images.device:
        raise ContractError(
            f"{owner} returned saliency on {saliency.device}, but the images are on "
            f"{images.device}; return it on the images' device"
        )
    saliency = saliency.detach().float()
    finite = torch.isfinite(saliency)
    if not bool(finite.all()):
        raise ContractError(
            f"{owner} returned NaN or infinite saliency in {_samples(~finite)}; expected finite "
            "values. Check the model's outputs on these images (a diverged model gives NaN "
            "gradients) or the attributor's arithmetic (divisions, logs)."
        )
    negative = saliency < 0
    if bool(negative.any()):
        raise ContractError(
            f"{owner} returned negative saliency (min {float(saliency.min()):.3g}) in "
            f"{_samples(negative)}; expected values >= 0. Return a magnitude (.abs()) or clamp "
            "the map (relu) in the attributor."
        )
    return saliency
