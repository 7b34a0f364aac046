"""What one cycle trains on: conventional images, or conventional + ADA copies.

Every cycle of every ADA branch, the first included, attributes through
:func:`compute_keep`, so the first-cycle keep masks the IoU analysis reads (``cycle1.pt``)
are exactly those the branch trained on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ada_core.data import SliceSet
from ada_core.engine.ddp import DataParallel, batch_slices
from ada_core.engine.loop import Runtime
from ada_core.engine.plan import Schedule
from ada_core.interfaces import Attributor, MaskBuilder, SegModel
from ada_core.quantities import METRICS
from ada_core.runfolder import (
    ConvergenceFile,
    JobPaths,
    Samples,
    read_keep,
    read_weights,
    write_cycle1,
    write_keep,
    write_record,
    write_samples,
)

if TYPE_CHECKING:
    from ada_core.engine.phase import Phase, TrainState

__all__ = ["SAMPLES", "CycleData", "Saliency", "average_weights", "compute_keep", "cycle_data",
           "write_convergence"]

#: Training images whose saliency, keep mask and ADA image the report shows.
SAMPLES = 4


@dataclass
class Saliency:
    """A branch's first-cycle saliency, computed for it by the shared pass of its seed
    (:mod:`ada_core.engine.firstcycle`): ``maps`` ``(N, 1, H, W)`` of every training image,
    and the attributor's counters that pass added."""

    maps: Tensor
    counters: Counter[str]


def compute_keep(
    attributor: Attributor,
    mask: MaskBuilder,
    model: SegModel,
    data: SliceSet,
    batch_size: int,
    ddp: DataParallel | None = None,
    given: Saliency | None = None,
) -> tuple[Tensor, Tensor]:
    """Keep masks ``(N, 1, H, W)`` of every image of ``data`` for the current model, and the
    saliency of the first :data:`SAMPLES` images (for the report).

    Every cycle of every branch attributes through this function, the first cycle included.
    Under DDP the batches are shared out over the ranks and the masks gathered (the same
    batches as one process, so the same masks), unless the attributor carries state from
    batch to batch (a random stream: a non-empty ``state_dict()``); then every rank attributes
    every batch, which keeps that state the same on every rank. ``given``: the saliency of
    this model already computed (the shared first-cycle pass); the masks are built from it
    batch by batch as from the attributor's own.
    """
    if given is not None:
        attributor.counters.update(given.counters)

    def one(sl: slice) -> tuple[Tensor, Tensor | None]:
        x, y = data.images[sl], data.masks[sl]
        saliency = attributor.attribute(model, x, y) if given is None else given.maps[sl]
        return mask.build(saliency, y), saliency[:SAMPLES].cpu() if sl.start == 0 else None

    def shipped(sl: slice) -> tuple[Tensor, Tensor | None]:
        keep, head = one(sl)
        return keep.bool().cpu(), head  # keep masks are 0/1: sent as bool

    if ddp is None or given is not None or attributor.state_dict():
        parts = [one(sl) for sl in batch_slices(len(data), batch_size)]
    else:
        gathered = ddp.map_batches(len(data), batch_size, shipped, counted=(attributor, mask))
        parts = [(k.to(data.images.device).float(), h) for k, h in gathered]
    return torch.cat([k for k, _ in parts]), parts[0][1]


def average_weights(job: JobPaths, epochs: list[int], device: torch.device) -> dict[str, Tensor]:
    states = [read_weights(job.avg(e), device).model for e in epochs]
    out = {}
    for k, v in states[-1].items():
        if v.is_floating_point():
            out[k] = torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
        else:  # e.g. batch norm's num_batches_tracked: the last epoch's
            out[k] = v
    return out


class CycleData:
    """The training tensors of one cycle."""

    def __init__(self, images: Tensor, masks: Tensor, augment_mask: Tensor | None) -> None:
        self.images, self.masks, self.augment_mask = images, masks, augment_mask


def cycle_data(
    phase: Phase,
    cycle: int,
    state: TrainState,
    train: SliceSet,
    schedule: Schedule,
    runtime: Runtime,
    resumed_inside: bool,
    counters: Counter[str],
) -> CycleData:
    """The training tensors of ``cycle``; an ADA cycle attributes and writes its masks
    (rank 0 writes, under DDP)."""
    if phase.attributor is None or phase.mask is None:
        images, masks = train.images, train.masks
        if phase.repeat > 1:
            images = images.repeat(phase.repeat, 1, 1, 1)
            masks = masks.repeat(phase.repeat, 1, 1, 1)
        return CycleData(images, masks, None)
    job = phase.paths
    head = None
    if resumed_inside:  # the cycle's masks are on disk: attributing again could differ
        keep = read_keep(job, cycle, train.images.device)
    else:
        given = phase.first_saliency if cycle == 1 else None
        keep, head = compute_keep(phase.attributor, phase.mask, state.model, train,
                                  schedule.eval_batch_size, runtime.ddp, given)  # fmt: skip
        phase.first_saliency = None  # used once
        if runtime.leader:
            write_keep(job, cycle, keep)
    for component in (phase.attributor, phase.mask):
        counters.update(component.counters)
        component.counters.clear()
    # ADA images are made from the original (un-augmented) training images.
    ada = phase.mask.apply(train.images, keep)
    if cycle == 1 and head is not None and runtime.leader:
        write_cycle1(job, keep, ada if schedule.save_ada_images else None)
        write_samples(job, Samples(train.images[:SAMPLES], train.masks[:SAMPLES], head,
                                   keep[:SAMPLES], ada[:SAMPLES], phase.mask.fill,
                                   train.spacing[:SAMPLES]))  # fmt: skip
    n = len(train)
    dev = train.images.device
    augment_mask = torch.cat(
        [
            torch.ones(n, dtype=torch.bool, device=dev),
            torch.full((n,), schedule.augment_ada_images, dtype=torch.bool, device=dev),
        ]
    )
    return CycleData(torch.cat([train.images, ada]), torch.cat([train.masks, train.masks]), augment_mask)


def write_convergence(job: JobPaths, k: int, per_slice: dict[str, Tensor], val: SliceSet) -> None:
    """``convergence/ada<k>.json``: per-slice validation metrics after ADA epoch ``k``."""
    write_record(job.convergence(k), job.root, ConvergenceFile(
        epoch=k, person=list(val.group), subject=list(val.subject), site=list(val.site),
        slice=val.slice_index.cpu().tolist(),
        values={m: [None if v != v else v for v in per_slice[m].tolist()] for m in METRICS}))  # fmt: skip
