"""Several attributors on the same images, sharing work where their plugin allows.

:func:`attribute_all` groups attributors by ``share_key`` and calls the group's
``attribute_group`` once per batch, so e.g. vanilla, input_x_gradient and gradcam cost one
forward and one backward together. It knows nothing about any plugin: a plugin opts in by
setting ``share_key`` (namespaced, e.g. ``"myplugin.gradient"``) and overriding
``Attributor.attribute_group``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ada_core.errors import ContractError, InputError
from ada_core.interfaces import Attributor, SegModel

__all__ = ["attribute_all", "share_groups"]


def share_groups(attributors: Mapping[str, Attributor]) -> list[list[str]]:
    """Labels grouped by ``share_key`` (first-seen order); ``None`` keys stay alone.

    Raises:
        InputError: a value is not an :class:`~ada_core.interfaces.Attributor`.
    """
    groups: dict[object, list[str]] = {}
    for label, attributor in attributors.items():
        if not isinstance(attributor, Attributor):
            raise InputError(
                f"attribute_all: attributors[{label!r}] must be an Attributor, got "
                f"{type(attributor).__name__}; build it with registry.attributors.build(name)"
            )
        key = type(attributor).share_key
        groups.setdefault(("alone", label) if key is None else ("shared", key), []).append(label)
    return list(groups.values())


def attribute_all(
    attributors: Mapping[str, Attributor],
    model: SegModel,
    images: Tensor,
    masks: Tensor,
    *,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Saliency of every attributor on the same images, sharing passes within share groups.

    Args:
        attributors: label -> attributor (labels are free, e.g. branch names).
        model: the network to explain.
        images: ``(N, 1, H, W)`` float.
        masks: ``(N, 1, H, W)`` ground truth in {0, 1}.
        batch_size: attribute at most this many images at a time (None: all at once).

    Returns:
        label -> ``(N, 1, H, W)`` float32 saliency, equal to ``attributor.attribute(model,
        images, masks)`` for each (up to floating-point reassociation).

    Raises:
        InputError: a value is not an Attributor, or ``batch_size`` is not positive; the
            attributors themselves validate the tensors.
        ContractError: an ``attribute_group`` returned the wrong number of maps.
    """
    groups = share_groups(attributors)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"attribute_all: batch_size must be >= 1 or None, got {batch_size}")
    if not groups:
        return {}
    sliceable = isinstance(images, Tensor) and isinstance(masks, Tensor) and images.ndim > 0
    if batch_size is None or not sliceable or images.shape[0] <= batch_size:
        spans = [slice(None)]  # the attributors validate (and reject) odd inputs themselves
    else:
        spans = [slice(s, s + batch_size) for s in range(0, images.shape[0], batch_size)]
    chunks: dict[str, list[Tensor]] = {label: [] for label in attributors}
    for span in spans:
        x, y = (images[span], masks[span]) if sliceable else (images, masks)
        for labels in groups:
            members = [attributors[label] for label in labels]
            if len(members) == 1 and type(members[0]).share_key is None:
                outs = [members[0].attribute(model, x, y)]
            else:
                outs = list(type(members[0]).attribute_group(members, model, x, y))
            if len(outs) != len(members):
                raise ContractError(
                    f"{type(members[0]).__name__}.attribute_group returned {len(outs)} maps "
                    f"for {len(members)} attributors ({', '.join(labels)})"
                )
            for label, out in zip(labels, outs):
                chunks[label].append(out)
    return {
        label: torch.cat(parts) if len(parts) > 1 else parts[0] for label, parts in chunks.items()
    }
