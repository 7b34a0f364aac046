"""One training epoch, prediction and evaluation: plain loops over device-resident tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ada_core.augment import Augmenter
from ada_core.data import SliceSet
from ada_core.interfaces import SegModel
from ada_core.metrics import segmentation_metrics, summarize

__all__ = ["Runtime", "evaluate", "evaluate_slices", "predict", "train_epoch"]


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed.

    Attributes:
        device: the compute device.
        amp: bf16 autocast (CUDA only).
        channels_last: channels_last memory format (CUDA only).
    """

    device: torch.device
    amp: bool = False
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: Tensor) -> Tensor:
        if self.channels_last and self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x


def train_epoch(
    model: SegModel,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    masks: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch_size: int,
    shuffle: torch.Generator,
    augmenter: Augmenter | None,
    runtime: Runtime,
    augment_mask: Tensor | None = None,
) -> Tensor:
    """Train one epoch over ``images`` in a seeded random order.

    Args:
        model: the network (set to train mode here).
        optimizer: its optimizer.
        images: ``(N, 1, H, W)`` on the device: conventional (and ADA) images.
        masks: ``(N, 1, H, W)`` their ground truth.
        loss_fn: loss on (logits, target).
        batch_size: samples per step; the last step takes the remainder.
        shuffle: generator of the sample order (on the device).
        augmenter: classical augmentation, or None.
        runtime: device, autocast and memory format.
        augment_mask: optional ``(N,)`` bool: which samples the augmenter may change.

    Returns:
        The mean training loss as a 0-d device tensor (no host sync here).
    """
    model.train()
    n = images.shape[0]
    order = torch.randperm(n, generator=shuffle, device=shuffle.device)
    total = torch.zeros((), device=images.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x, y = images[idx], masks[idx]
        if augmenter is not None:
            x, y = augmenter(x, y, None if augment_mask is None else augment_mask[idx])
        with runtime.autocast():
            logits = model(runtime.prepare(x))
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * idx.numel()
    return total / n


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.inference_mode()
def predict(model: SegModel, images: Tensor, batch_size: int, runtime: Runtime) -> Tensor:
    """Binary predictions ``(N, 1, H, W)`` float32 in {0, 1} (logit > 0) in eval mode.

    Restores the model's train/eval mode.
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for sl in _batches(images.shape[0], batch_size):
            with runtime.autocast():
                logits = model(runtime.prepare(images[sl]))
            out.append((logits.float() > 0).float())
        return torch.cat(out) if out else images.new_zeros(images.shape)
    finally:
        model.train(was_training)


def evaluate_slices(
    model: SegModel, data: SliceSet, batch_size: int, runtime: Runtime
) -> dict[str, Tensor]:
    """Per-slice metrics (:func:`~ada_core.metrics.segmentation_metrics`) of ``model`` on
    ``data``, on the CPU."""
    parts = []
    for sl in _batches(len(data), batch_size):
        pred = predict(model, data.images[sl], batch_size, runtime)
        parts.append(segmentation_metrics(pred, data.masks[sl], data.spacing[sl]))
    return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}


def evaluate(
    model: SegModel, data: SliceSet, batch_size: int, runtime: Runtime
) -> dict[str, float]:
    """Summary metrics (DSC, HSD, TPR, TNR, PPV, ...) of ``model`` on ``data``'s slices."""
    return {k: float(v) for k, v in summarize(evaluate_slices(model, data, batch_size, runtime)).items()}
