"""Several attributors on the same images, batch by batch: a thin wrapper over the base class.

:func:`attribute_all` slices the images into batches and hands each batch to
:meth:`Attributor.attribute_group <ada_core.interfaces.Attributor.attribute_group>`, the one
path every attribution takes (cycle 1 and cycle 31 alike). The base class groups members by
``share_key``, so e.g. vanilla, input_x_gradient and gradcam cost one forward and one backward
together. Nothing here knows any plugin.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ada_core.errors import InputError
from ada_core.interfaces import Attributor, SegModel

__all__ = ["attribute_all"]


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
        images, masks)`` batch by batch.

    Raises:
        InputError: a value is not an Attributor, or ``batch_size`` is not positive; the base
            class validates the tensors.
        ContractError: an attributor broke its contract (see ``Attributor.attribute_group``).
    """
    for label, attributor in attributors.items():
        if not isinstance(attributor, Attributor):
            raise InputError(
                f"attribute_all: attributors[{label!r}] must be an Attributor, got "
                f"{type(attributor).__name__}; build it with registry.attributors.build(name)"
            )
    if batch_size is not None and batch_size < 1:
        raise InputError(f"attribute_all: batch_size must be >= 1 or None, got {batch_size}")
    if not attributors:
        return {}
    labels, members = list(attributors), list(attributors.values())
    sliceable = isinstance(images, Tensor) and isinstance(masks, Tensor) and images.ndim > 0
    if batch_size is None or not sliceable or images.shape[0] <= batch_size:
        spans = [slice(None)]  # the base class validates (and rejects) odd inputs itself
    else:
        spans = [slice(s, s + batch_size) for s in range(0, images.shape[0], batch_size)]
    chunks: dict[str, list[Tensor]] = {label: [] for label in labels}
    for span in spans:
        x, y = (images[span], masks[span]) if sliceable else (images, masks)
        for label, saliency in zip(labels, Attributor.attribute_group(members, model, x, y)):
            chunks[label].append(saliency)
    return {
        label: torch.cat(parts) if len(parts) > 1 else parts[0] for label, parts in chunks.items()
    }
