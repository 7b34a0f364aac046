"""One training epoch, prediction and evaluation: plain loops over device-resident tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from ada_core.augment import Augmenter
from ada_core.data import SliceSet
from ada_core.engine.ddp import DataParallel, batch_slices
from ada_core.interfaces import SegModel
from ada_core.metrics import summarize
from ada_core.scoring import score_slices

if TYPE_CHECKING:
    from ada_core.config import TrainConfig

__all__ = ["CompileMode", "Runtime", "evaluate", "evaluate_slices", "predict", "train_epoch"]

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed.

    Attributes:
        device: the compute device.
        amp: bf16 autocast (CUDA only).
        channels_last: channels_last memory format (CUDA only).
        compile: ``torch.compile`` mode of the training forward (``"off"``: eager).
        fused_adam: Adam's fused kernel (CUDA only).
        ddp: this rank's share of a data-parallel job, or None (one process per job).
    """

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    compile: CompileMode = "off"
    fused_adam: bool = False
    ddp: DataParallel | None = None

    @classmethod
    def from_config(cls, train: TrainConfig, device: torch.device) -> Runtime:
        """The runtime ``train`` asks for on ``device`` (without DDP: the study adds it)."""
        return cls(device, amp=train.amp, channels_last=train.channels_last,
                   compile=train.compile, fused_adam=train.fused_adam)  # fmt: skip

    @property
    def leader(self) -> bool:
        """True where the job's files are written: always, except on DDP ranks other than 0."""
        return self.ddp is None or self.ddp.leader

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: Tensor) -> Tensor:
        if self.channels_last and self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """Adam; the fused kernel on CUDA with ``fused_adam`` (one launch for all tensors)."""
        if self.fused_adam and self.device.type == "cuda":
            return torch.optim.Adam(params, lr=lr, fused=True)
        return torch.optim.Adam(params, lr=lr)

    def train_module(self, model: SegModel) -> nn.Module:
        """What the training step calls: ``model``, in DDP and/or compiled as asked.

        Checkpoints, attribution and evaluation keep using ``model`` itself (its state-dict
        keys, its hooks); the wrappers share its parameters.
        """
        module: nn.Module = model
        if self.ddp is not None:
            module = self.ddp.wrap(module, self.device)
        if self.compile != "off":
            module = torch.compile(module, mode=None if self.compile == "default" else self.compile)
        return module

    def step_begin(self) -> None:
        """Before each training forward: CUDA graphs (``reduce-overhead``) must be told that
        the previous step's outputs may be overwritten."""
        if self.compile == "reduce-overhead" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()


def train_epoch(
    model: nn.Module,
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
        model: the network (set to train mode here), or what
            :meth:`Runtime.train_module` made of it.
        optimizer: its optimizer.
        images: ``(N, 1, H, W)`` on the device: conventional (and ADA) images.
        masks: ``(N, 1, H, W)`` their ground truth.
        loss_fn: loss on (logits, target).
        batch_size: samples per step (over all ranks under DDP); the last step takes the
            remainder.
        shuffle: generator of the sample order (on the device).
        augmenter: classical augmentation, or None.
        runtime: device, autocast, memory format, compile, DDP.
        augment_mask: optional ``(N,)`` bool: which samples the augmenter may change.

    Returns:
        The mean training loss as a 0-d device tensor (no host sync here; under DDP the
        mean over every rank's samples).
    """
    model.train()
    ddp = runtime.ddp
    n = images.shape[0]
    order = torch.randperm(n, generator=shuffle, device=shuffle.device)
    total = torch.zeros((), device=images.device)
    seen = 0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x, y = images[idx], masks[idx]
        if augmenter is not None:
            # Under DDP every rank augments the whole batch (the same draws), then keeps its part.
            x, y = augmenter(x, y, None if augment_mask is None else augment_mask[idx])
        weight = 1.0
        if ddp is not None:
            part = ddp.part(idx.numel())
            if part is None:
                continue
            x, y = x[part], y[part]
            # DDP averages gradients over ranks; this makes it a mean over samples.
            weight = x.shape[0] * ddp.world / idx.numel()
        runtime.step_begin()
        with runtime.autocast():
            logits = model(runtime.prepare(x))
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        (loss if weight == 1.0 else loss * weight).backward()
        optimizer.step()
        total += loss.detach() * x.shape[0]
        seen += x.shape[0]
    if ddp is None:
        return total / n
    sums = ddp.all_sum(torch.stack([total, torch.tensor(float(seen), device=total.device)]))
    ddp.sync_buffers(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model)
    return sums[0] / sums[1]


@torch.inference_mode()
def predict(model: SegModel, images: Tensor, batch_size: int, runtime: Runtime) -> Tensor:
    """Binary predictions ``(N, 1, H, W)`` float32 in {0, 1} (logit > 0) in eval mode.

    Restores the model's train/eval mode.
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for sl in batch_slices(images.shape[0], batch_size):
            with runtime.autocast():
                logits = model(runtime.prepare(images[sl]))
            out.append((logits.float() > 0).float())
        return torch.cat(out) if out else images.new_zeros(images.shape)
    finally:
        model.train(was_training)


def evaluate_slices(
    model: SegModel, data: SliceSet, batch_size: int, runtime: Runtime,
    metrics: Collection[str] | None = None,
) -> dict[str, Tensor]:  # fmt: skip
    """Per-slice metrics (:func:`~ada_core.scoring.score_slices`) of ``model`` on
    ``data``, on the CPU.

    ``metrics``: what the caller reads (None: every metric; see ``score_slices``). Under DDP
    every rank must call it: the batches are shared out and the per-slice metrics gathered,
    the same on every rank.
    """

    def one(sl: slice) -> dict[str, Tensor]:
        pred = predict(model, data.images[sl], batch_size, runtime)
        return score_slices(pred, data.masks[sl], data.spacing[sl], metrics)

    if runtime.ddp is None:
        parts = [one(sl) for sl in batch_slices(len(data), batch_size)]
    else:
        parts = runtime.ddp.map_batches(
            len(data), batch_size, lambda sl: {k: v.cpu() for k, v in one(sl).items()}
        )
    return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}


def evaluate(
    model: SegModel, data: SliceSet, batch_size: int, runtime: Runtime
) -> dict[str, float]:
    """Summary metrics (DSC, HSD, TPR, TNR, PPV, ...) of ``model`` on ``data``'s slices."""
    return {k: float(v) for k, v in summarize(evaluate_slices(model, data, batch_size, runtime)).items()}
