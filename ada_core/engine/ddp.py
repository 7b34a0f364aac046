"""Data-parallel training of one job (``train.ddp = true`` under torchrun).

Every rank holds the whole data set on its device and runs every job; inside a job:

- **training**: each global batch of ``train.batch_size`` images (the same seeded order and
  the same augmentation on every rank, so each image is augmented exactly as in one process)
  is split into ``world`` equal parts; rank ``r`` trains on part ``r`` through
  :class:`~torch.nn.parallel.DistributedDataParallel`, which all-reduces (averages) the
  gradients. A last batch smaller than the world is skipped (at most ``world - 1`` images of
  an epoch; the order changes every epoch). Batch-norm buffers are broadcast from rank 0 after
  every epoch, so every rank holds the same model.
- **attribution and validation**: the batches of ``train.eval_batch_size`` images one process
  would compute are dealt out in contiguous runs (:meth:`DataParallel.map_batches`) and the
  per-image results (keep masks, per-slice metrics) all-gathered in order: the same batches
  through the same code, so the gathered masks are those of one process, bit for bit.
- **files**: only rank 0 writes (job folder, checkpoints, logs); the others read what it wrote.

What it changes against one process: each rank's part of a batch passes through batch
norm and the batch-level soft Dice on its own, so the weights differ (not only in rounding)
from a one-process run; the key of a DDP run holds the number of processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ada_core.engine.state import tensor_digest
from ada_core.errors import AdaError

__all__ = ["DataParallel", "batch_slices"]

T = TypeVar("T")


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """The batches one process computes: ``[0, b), [b, 2b), ...`` over ``n`` items."""
    return [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


@dataclass(frozen=True)
class DataParallel:
    """This rank's share of a data-parallel job.

    Attributes:
        rank: this process.
        world: number of processes.
        group: the gloo group for object messages (the default group carries tensors).
    """

    rank: int
    world: int
    group: Any = None

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (rank 0's weights are broadcast to all)."""
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def part(self, n: int) -> slice | None:
        """This rank's part of a global batch of ``n`` (sizes differ by at most one), or
        None when the batch has fewer samples than processes (it is skipped)."""
        if n < self.world:
            return None
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def all_sum(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over the ranks (a device tensor: NCCL on CUDA, gloo on the CPU)."""
        t = t.clone()
        dist.all_reduce(t)
        return t

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) on every rank."""
        for buf in model.buffers():
            dist.broadcast(buf, src=0)

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def map_batches(
        self,
        n: int,
        batch_size: int,
        fn: Callable[[slice], T],
        counted: Sequence[Any] = (),
    ) -> list[T]:
        """``[fn(b) for b in batch_slices(n, batch_size)]``, the batches shared out.

        Rank ``r`` computes a contiguous run of the batches; the results (which ``fn`` must
        return on the CPU) are all-gathered in batch order. ``counted`` components' event
        counters end up holding every rank's counts. An error on any rank is raised on every
        rank (so no rank is left waiting in a collective).

        Raises:
            AdaError: ``fn`` failed on some rank (its message, naming the rank).
        """
        batches = batch_slices(n, batch_size)
        runs = torch.tensor_split(torch.arange(len(batches)), self.world)
        mine = [batches[int(i)] for i in runs[self.rank]]
        before = [Counter(c.counters) for c in counted]
        try:
            results = [fn(b) for b in mine]
            deltas = [{k: v - b[k] for k, v in c.counters.items()}  # zero counts kept, as one process
                      for c, b in zip(counted, before, strict=True)]  # fmt: skip
            payload: tuple[str, Any, Any] = ("ok", results, deltas)
        except Exception as e:  # noqa: BLE001 - every rank must learn of it, or the others hang
            payload = ("error", f"rank {self.rank}: {e}", None)
        everyone: list[Any] = [None] * self.world
        dist.all_gather_object(everyone, payload, group=self.group)
        errors = [p[1] for p in everyone if p[0] == "error"]
        if errors:
            raise AdaError("; ".join(errors))
        for k, (c, b) in enumerate(zip(counted, before, strict=True)):
            c.counters.clear()
            c.counters.update(b)
            for p in everyone:
                c.counters.update(p[2][k])
        return [r for p in everyone for r in p[1]]

    def check_same(self, model: nn.Module, where: str) -> None:
        """Raise unless every rank holds the same weights and buffers (bit for bit).

        Raises:
            AdaError: naming the ranks that differ from rank 0.
        """
        digests: list[Any] = [None] * self.world
        dist.all_gather_object(digests, tensor_digest(model.state_dict()), group=self.group)
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise AdaError(
                f"{where}: the data-parallel ranks {differ} hold other weights than rank 0; "
                "this is a bug in ADA's DDP path (please report it), or the ranks run on "
                "different hardware or thread counts"
            )
