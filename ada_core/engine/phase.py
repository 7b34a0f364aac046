"""Algorithm 1 as one loop: the standard phase is cycle 0 without an attributor.

A phase trains a list of cycles ``(cycle, epochs)`` over a typed :class:`TrainState`. Each
cycle first builds its training data: the conventional images (the standard phase and the
keep-training control, shown twice per epoch for the step-matched control), or the
conventional images plus their ADA copies (an ADA branch: attribute every training image with
the current model, build keep masks, erase). Then it trains its epochs; after every epoch it
validates, records the epoch in ``metrics.jsonl``, keeps the best-validation weights and
writes ``last.pt`` (everything needed to continue exactly, the previous version kept).

Phase folder: ``metrics.jsonl``, ``last.pt`` (+ ``last.prev.pt``), ``best.pt``, ``avg/``
(checkpoint rule 'average'), and for ADA branches ``keep.pt`` (this cycle's keep masks),
``cycle1.pt`` (first-cycle keep masks and ADA images: the IoU analysis reads these),
``samples.pt`` (saliency, keep mask and ADA image of the first training images, for the
report), ``convergence/ada<k>.json`` (per-slice validation metrics after ADA epoch k).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ada_core.augment import Augmenter
from ada_core.data import SliceSet
from ada_core.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    tensor_digest,
    write_json,
)
from ada_core.engine.cycle import average_weights, compute_keep, cycle_data, write_convergence
from ada_core.engine.keys import derive_seed
from ada_core.engine.loop import Runtime, evaluate_slices, train_epoch
from ada_core.engine.losses import make_loss
from ada_core.engine.plan import Schedule
from ada_core.engine.runlog import MetricsLog, Progress
from ada_core.errors import AdaError
from ada_core.interfaces import Attributor, MaskBuilder, SegModel
from ada_core.metrics import summarize

__all__ = ["Best", "Phase", "PhaseFailed", "PhaseOutcome", "TrainState", "compute_keep", "run_phase"]

#: Validation metric that picks the best epoch (higher is better).
SELECT = "dsc_mean"


class PhaseFailed(AdaError):
    """A phase stopped: non-finite loss or saliency. Its last good checkpoint is kept."""

    def __init__(self, message: str, *, cycle: int, epoch: int) -> None:
        super().__init__(message)
        self.cycle = cycle
        self.epoch = epoch


@dataclass
class Best:
    epoch: int
    cycle: int
    metrics: dict[str, float]


@dataclass
class Phase:
    """What one phase trains.

    Attributes:
        label: ``"standard"`` or the branch label.
        kind: ``"standard"``, ``"ada"`` or ``"control"``.
        folder: the phase folder.
        seed: the replicate's seed (every random stream derives from it).
        cycles: ``[(cycle, epochs), ...]``; the standard phase is ``[(0, standard_epochs)]``.
        attributor: the ADA branch's attributor (None otherwise).
        mask: its mask builder (None otherwise).
        repeat: times the conventional data is shown per epoch (2: step-matched control).
        start: checkpoint the phase starts from (a branch: the standard phase's ``last.pt``).
    """

    label: str
    kind: Literal["standard", "ada", "control"]
    folder: Path
    seed: int
    cycles: list[tuple[int, int]]
    attributor: Attributor | None = None
    mask: MaskBuilder | None = None
    repeat: int = 1
    start: Path | None = None
    #: Written into every weights checkpoint (model spec, preprocessing, label, seed), so a
    #: checkpoint rebuilds its network without the config file (``ada predict``).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return sum(n for _, n in self.cycles)


@dataclass
class TrainState:
    """Model, optimizer, random generators and bookkeeping of a phase in progress.

    ``model`` is the network itself (checkpoints, attribution, evaluation); ``trainer`` is what
    the training step calls (the model, or its DDP / compiled wrapper sharing its parameters).
    """

    model: SegModel
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    trainer: nn.Module
    epoch: int = 0
    best: Best | None = None
    seconds: float = 0.0

    def checkpoint(
        self, runtime: Runtime, attributor: Attributor | None, meta: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "meta": meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng(self.generators, runtime.device),
            "epoch": self.epoch,
            "best": None if self.best is None else vars(self.best),
            "seconds": self.seconds,
            "attributor": {} if attributor is None else attributor.state_dict(),
        }

    def restore(self, state: dict[str, Any], runtime: Runtime) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], self.generators, runtime.device)


@dataclass
class PhaseOutcome:
    """Where a finished phase ended and which weights it selected."""

    epochs: int
    best: Best
    selected: str
    selected_epoch: int | None
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)


def _new_state(
    new_model: Callable[[], SegModel], seed: int, schedule: Schedule, runtime: Runtime
) -> TrainState:
    torch.manual_seed(seed)  # the initial weights and the global stream dropout draws from
    model = new_model().to(runtime.device)
    if runtime.channels_last and runtime.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = runtime.optimizer(list(model.parameters()), schedule.lr)
    generators = {
        name: torch.Generator(device=runtime.device).manual_seed(derive_seed(seed, name))
        for name in ("shuffle", "augment")
    }
    return TrainState(model, optimizer, generators, runtime.train_module(model))


def _skip(*args: Any, **kwargs: Any) -> None:
    """Where rank 0 of a data-parallel job writes a file, the other ranks do nothing."""


class _Silent:
    """The progress display of DDP ranks other than 0."""

    def update(self, **postfix: Any) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


def _select(better: dict[str, float], best: Best | None) -> bool:
    value = better.get(SELECT, math.nan)
    if best is None:
        return True
    old = best.metrics.get(SELECT, math.nan)
    if value != value:  # a NaN score never replaces a recorded best
        return False
    return old != old or value > old


def run_phase(
    phase: Phase,
    train: SliceSet,
    val: SliceSet,
    schedule: Schedule,
    runtime: Runtime,
    new_model: Callable[[], SegModel],
    *,
    resume: bool,
    quiet: bool = False,
    convergence_at: tuple[int, ...] = (),
    observers: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> PhaseOutcome:
    """Train ``phase`` to its end (continuing from ``last.pt`` when ``resume``).

    ``observers`` are called with every epoch's record after it is logged (experiment
    tracking, e.g. TensorBoard); the run folder stays the source of truth.

    Raises:
        PhaseFailed: the training loss or an attribution became non-finite; ``last.pt`` still
            holds the last good epoch.
    """
    folder = phase.folder
    # Under DDP only rank 0 writes the phase's files; the other ranks compute the same state.
    save, write = (save_checkpoint, write_json) if runtime.leader else (_skip, _skip)
    state = _new_state(new_model, phase.seed, schedule, runtime)
    if phase.attributor is not None:
        phase.attributor.set_seed(derive_seed(phase.seed, "attributor", phase.label))
    if phase.start is not None:
        state.restore(load_checkpoint(phase.start, runtime.device), runtime)
    last = folder / "last.pt"
    if resume and last.is_file():
        saved = load_checkpoint(last, runtime.device, fallback=True)
        state.restore(saved, runtime)
        state.epoch, state.seconds = saved["epoch"], saved["seconds"]
        state.best = None if saved["best"] is None else Best(**saved["best"])
        if phase.attributor is not None:
            phase.attributor.load_state_dict(saved.get("attributor", {}))
    elif phase.start is not None:  # a fresh branch records where it really started
        write(
            folder / "start.json",
            {
                "from": str(phase.start),
                "model": tensor_digest(state.model.state_dict()),
                "optimizer": tensor_digest(state.optimizer.state_dict()),
                "rng": tensor_digest(capture_rng(state.generators, runtime.device)),
            },
        )
    log = MetricsLog(folder / "metrics.jsonl", keep=state.epoch) if runtime.leader else None
    augmenter = Augmenter(schedule.augment, state.generators["augment"])
    loss_fn = make_loss(schedule.loss)
    total = phase.epochs
    bar = Progress(total, phase.label, quiet, initial=state.epoch) if runtime.leader else _Silent()
    all_counters: Counter[str] = Counter()
    average_from = total - schedule.average_last + 1 if schedule.checkpoint == "average" else None
    first_epoch = 1
    metrics: dict[str, float] = {}
    for cycle, n_epochs in phase.cycles:
        end = first_epoch + n_epochs - 1
        if state.epoch >= end:
            first_epoch = end + 1
            continue
        t0 = time.perf_counter()
        counters: Counter[str] = Counter()
        try:
            data = cycle_data(
                phase, cycle, state, train, schedule, runtime, state.epoch >= first_epoch, counters
            )
        except AdaError as e:
            raise PhaseFailed(
                f"{phase.label}: attribution failed in cycle {cycle}: {e}",
                cycle=cycle,
                epoch=state.epoch,
            ) from e
        all_counters.update(counters)
        prep_s = time.perf_counter() - t0
        state.seconds += prep_s
        for epoch in range(max(first_epoch, state.epoch + 1), end + 1):
            t1 = time.perf_counter()
            loss_t = train_epoch(
                state.trainer,
                state.optimizer,
                data.images,
                data.masks,
                loss_fn=loss_fn,
                batch_size=schedule.batch_size,
                shuffle=state.generators["shuffle"],
                augmenter=augmenter if schedule.augment.enabled else None,
                runtime=runtime,
                augment_mask=data.augment_mask,
            )
            loss = float(loss_t)  # host-device sync point: once per epoch
            train_s = time.perf_counter() - t1
            if not math.isfinite(loss):
                raise PhaseFailed(
                    f"{phase.label}: the training loss became {loss} in cycle {cycle}, epoch "
                    f"{epoch}; stopped, the last good checkpoint (epoch {state.epoch}) is kept. "
                    "Lower train.lr or check the data",
                    cycle=cycle,
                    epoch=epoch,
                )
            per_slice = evaluate_slices(state.model, val, schedule.eval_batch_size, runtime)
            metrics = {k: float(v) for k, v in summarize(per_slice).items()}
            state.epoch = epoch
            step_s = time.perf_counter() - t1
            state.seconds += step_s
            record = {
                    "phase": phase.kind,
                    "branch": None if phase.kind == "standard" else phase.label,
                    "seed": phase.seed,
                    "cycle": cycle,
                    "epoch": epoch,
                    "loss": loss,
                    "metrics": metrics,
                    "seconds": step_s + (prep_s if epoch == first_epoch else 0.0),
                    "images_per_s": data.images.shape[0] / train_s,
                    "train_images": int(data.images.shape[0]),
                    "counters": dict(counters) if epoch == first_epoch else {},
            }  # fmt: skip
            if log is not None:
                log.write(record)
                for observe in observers:
                    observe(record)
            if runtime.leader and phase.kind != "standard" and epoch in convergence_at:
                write_convergence(folder, epoch, per_slice, val)
            if _select(metrics, state.best):
                state.best = Best(epoch, cycle, metrics)
                save(
                    folder / "best.pt",
                    {"meta": phase.meta, "model": state.model.state_dict(), "epoch": epoch,
                     "cycle": cycle, "metrics": metrics},
                )  # fmt: skip
            if average_from is not None and epoch >= average_from:
                save(folder / "avg" / f"epoch-{epoch}.pt", {"model": state.model.state_dict()})
            save(last, state.checkpoint(runtime, phase.attributor, phase.meta), keep_previous=True)
            bar.update(cycle=cycle, loss=loss, dsc=metrics.get(SELECT, math.nan))
        first_epoch = end + 1
        if quiet and phase.kind != "standard":
            bar.note(f"cycle {cycle} done, val DSC {metrics.get(SELECT, math.nan):.2f}")
    bar.close()
    if state.best is None:  # no epochs: the start weights are the phase's result
        metrics = summarize(evaluate_slices(state.model, val, schedule.eval_batch_size, runtime))
        state.best = Best(0, 0, {k: float(v) for k, v in metrics.items()})
        save(folder / "best.pt", {"meta": phase.meta, "model": state.model.state_dict(),
                                  "epoch": 0, "cycle": 0, "metrics": state.best.metrics})  # fmt: skip
        save(last, state.checkpoint(runtime, phase.attributor, phase.meta), keep_previous=True)
    selected, selected_epoch = "best.pt", state.best.epoch
    if schedule.checkpoint == "last":
        selected, selected_epoch = "last.pt", state.epoch
    elif schedule.checkpoint == "average" and total:
        epochs = list(range(max(1, total - schedule.average_last + 1), total + 1))
        if runtime.leader:  # the average of rank 0's files
            save(folder / "average.pt", {"meta": phase.meta, "epochs": epochs,
                                         "model": average_weights(folder, epochs, runtime.device)})  # fmt: skip
        selected, selected_epoch = "average.pt", None
    if runtime.ddp is not None:
        runtime.ddp.check_same(state.model, f"{phase.label}, end of training")
        runtime.ddp.barrier()  # rank 0's files are complete before any rank reads them
    bar.note(
        f"done: best val DSC {state.best.metrics.get(SELECT, math.nan):.2f} at epoch "
        f"{state.best.epoch}; scoring {selected}; {state.seconds:.1f} s"
    )
    return PhaseOutcome(
        total, state.best, selected, selected_epoch, state.seconds, dict(all_counters)
    )
