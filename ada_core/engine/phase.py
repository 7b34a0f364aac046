"""Algorithm 1 as one loop: the standard phase is cycle 0 without an attributor.

A phase trains a list of cycles ``(cycle, epochs)`` over a typed :class:`TrainState`. Each
cycle first builds its training data (:func:`~ada_core.engine.cycle.cycle_data`): the
conventional images (the standard phase and the keep-training control, shown twice per epoch
for the step-matched control), or the conventional images plus their ADA copies. Then it
trains its epochs; after every epoch it validates (DSC and the other counts; the surface
distances only where a convergence file keeps them), records the epoch in ``metrics.jsonl``,
keeps the best-validation weights and, every ``checkpoint_every`` epochs and at the phase's
end, writes ``last.pt`` (everything needed to continue exactly, the previous version kept; a
resumed phase trains the epochs after it again). The files are the job folder's
(:class:`~ada_core.runfolder.JobPaths`), written through :mod:`ada_core.runfolder`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ada_core.augment import Augmenter
from ada_core.data import SliceSet
from ada_core.engine.cycle import (
    CycleData,
    Saliency,
    average_weights,
    cycle_data,
    write_convergence,
)
from ada_core.engine.keys import derive_seed
from ada_core.engine.loop import Runtime, evaluate_slices, train_epoch
from ada_core.engine.losses import make_loss
from ada_core.engine.plan import Schedule
from ada_core.engine.runlog import Progress, Silent
from ada_core.engine.state import capture_rng, restore_rng, tensor_digest
from ada_core.errors import AdaError
from ada_core.interfaces import Attributor, MaskBuilder, SegModel
from ada_core.metrics import DISTANCES, summarize
from ada_core.runfolder import (
    EpochLog,
    EpochRecord,
    JobPaths,
    StartRecord,
    TrainingState,
    Weights,
    read_training_state,
    write_record,
    write_training_state,
    write_weights,
)

__all__ = ["Best", "Phase", "PhaseFailed", "PhaseOutcome", "TrainState", "fresh_state", "run_phase"]

#: Validation metric that picks the best epoch (higher is better).
SELECT = "dsc_mean"
#: What each epoch's validation computes: selection and the convergence figure read DSC; the
#: other counts (TPR, TNR, PPV, fail) come with it at no cost. The surface distances are
#: computed only on the epochs whose per-slice values a convergence file keeps.
EPOCH_METRICS = ("dsc",)


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
        paths: the job folder.
        seed: the replicate's seed (every random stream derives from it).
        cycles: ``[(cycle, epochs), ...]``; the standard phase is ``[(0, standard_epochs)]``.
        attributor: the ADA branch's attributor (None otherwise).
        mask: its mask builder (None otherwise).
        repeat: times the conventional data is shown per epoch (2: step-matched control).
        start: the job whose ``last.pt`` the phase starts from (a branch: its standard phase).
        meta: written into every weights checkpoint (model spec, preprocessing, label, seed),
            so a checkpoint rebuilds its network without the config file (``ada predict``).
        first_saliency: the first cycle's saliency when the seed's shared pass computed it
            from the same start weights (None: the cycle attributes itself).
    """

    label: str
    kind: Literal["standard", "ada", "control"]
    paths: JobPaths
    seed: int
    cycles: list[tuple[int, int]]
    attributor: Attributor | None = None
    mask: MaskBuilder | None = None
    repeat: int = 1
    start: JobPaths | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    first_saliency: Saliency | None = None

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

    def checkpoint(self, runtime: Runtime, phase: Phase) -> TrainingState:
        attributor = {} if phase.attributor is None else phase.attributor.state_dict()
        return TrainingState(self.model.state_dict(), self.optimizer.state_dict(),
                             capture_rng(self.generators, runtime.device), self.epoch,
                             None if self.best is None else vars(self.best), self.seconds,
                             attributor, phase.meta)  # fmt: skip

    def restore(self, saved: TrainingState, runtime: Runtime) -> None:
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        restore_rng(saved.rng, self.generators, runtime.device)

    def weights(self, meta: dict[str, Any], epoch: int, cycle: int) -> Weights:
        metrics = self.best.metrics if self.best is not None else {}
        return Weights(self.model.state_dict(), meta, epoch, cycle, metrics)


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


def fresh_state(phase: Phase, new_model: Callable[[], SegModel], schedule: Schedule,
                runtime: Runtime) -> TrainState:  # fmt: skip
    """The state a phase starts from when it has nothing of its own yet: new weights, or its
    start's ``last.pt``; its attributor seeded."""
    state = _new_state(new_model, phase.seed, schedule, runtime)
    if phase.attributor is not None:
        phase.attributor.set_seed(derive_seed(phase.seed, "attributor", phase.label))
    if phase.start is not None:
        state.restore(read_training_state(phase.start.last, runtime.device), runtime)
    return state


def _open(phase: Phase, new_model: Callable[[], SegModel], schedule: Schedule,
          runtime: Runtime, resume: bool) -> TrainState:  # fmt: skip
    """The state the phase starts or continues from: fresh, its start's ``last.pt``, or its
    own ``last.pt`` when resuming (falling back to ``last.prev.pt`` when that is damaged)."""
    state = fresh_state(phase, new_model, schedule, runtime)
    p = phase.paths
    if resume and (p.last.is_file() or p.previous(p.last).is_file()):
        saved = read_training_state(p.last, runtime.device, job=p)
        state.restore(saved, runtime)
        state.epoch, state.seconds = saved.epoch, saved.seconds
        state.best = None if saved.best is None else Best(**saved.best)
        if phase.attributor is not None:
            phase.attributor.load_state_dict(saved.attributor)
    elif phase.start is not None and runtime.leader:  # a fresh branch records its real start
        write_record(p.start, p.root, StartRecord(
            source=str(phase.start.last.relative_to(p.root)),
            model=tensor_digest(state.model.state_dict()),
            optimizer=tensor_digest(state.optimizer.state_dict()),
            rng=tensor_digest(capture_rng(state.generators, runtime.device))))  # fmt: skip
    return state


def _summary(per_slice: dict[str, torch.Tensor]) -> dict[str, float]:
    """The epoch's validation summary: the same keys every epoch (surface distances left out,
    also on the epochs that computed them for a convergence file)."""
    kept = {k: v for k, v in per_slice.items() if k not in DISTANCES}
    return {k: float(v) for k, v in summarize(kept).items()}


def _better(metrics: dict[str, float], best: Best | None) -> bool:
    value = metrics.get(SELECT, math.nan)
    if best is None:
        return True
    old = best.metrics.get(SELECT, math.nan)
    if value != value:  # a NaN score never replaces a recorded best
        return False
    return old != old or value > old


class _Run:
    """One phase in progress: its state, data of the current cycle, log and progress."""

    def __init__(self, phase: Phase, state: TrainState, val: SliceSet, schedule: Schedule,
                 runtime: Runtime, quiet: bool,
                 observers: Sequence[Callable[[EpochRecord], None]]) -> None:  # fmt: skip
        self.phase, self.state, self.val, self.s, self.rt = phase, state, val, schedule, runtime
        self.leader = runtime.leader  # under DDP only rank 0 writes the phase's files
        self.log = EpochLog(phase.paths, keep=state.epoch) if self.leader else None
        self.observers = observers
        self.augmenter = Augmenter(schedule.augment, state.generators["augment"])
        self.loss_fn = make_loss(schedule.loss)
        self.bar = Progress(phase.epochs, phase.label, quiet, initial=state.epoch) \
            if self.leader else Silent()
        self.counters: Counter[str] = Counter()
        total = phase.epochs
        self.average_from = total - schedule.average_last + 1 \
            if schedule.checkpoint == "average" else None
        self.metrics: dict[str, float] = {}
        self.quiet = quiet

    def cycle(self, cycle: int, first: int, last: int, train: SliceSet) -> None:
        """Build the cycle's data and train its epochs ``first..last`` not yet done."""
        data, prep_s, counters = self.prepare(cycle, first, train)
        for epoch in range(max(first, self.state.epoch + 1), last + 1):
            extra = prep_s if epoch == first else 0.0
            self.epoch(cycle, epoch, data, extra, dict(counters) if epoch == first else {})
        self.cycle_done(cycle)

    def prepare(self, cycle: int, first: int,
                train: SliceSet) -> tuple[CycleData, float, Counter[str]]:  # fmt: skip
        """The cycle's training data, the seconds it took and the components' counters."""
        st = self.state
        t0 = time.perf_counter()
        counters: Counter[str] = Counter()
        try:
            data = cycle_data(self.phase, cycle, st, train, self.s, self.rt, st.epoch >= first,
                              counters)  # fmt: skip
        except AdaError as e:
            raise PhaseFailed(f"{self.phase.label}: attribution failed in cycle {cycle}: {e}",
                              cycle=cycle, epoch=st.epoch) from e  # fmt: skip
        self.counters.update(counters)
        prep_s = time.perf_counter() - t0
        st.seconds += prep_s
        return data, prep_s, counters

    def cycle_done(self, cycle: int) -> None:
        if self.quiet and self.phase.kind != "standard":
            self.bar.note(f"cycle {cycle} done, val DSC {self.metrics.get(SELECT, math.nan):.2f}")

    def epoch(self, cycle: int, epoch: int, data: CycleData, extra_s: float,
              counters: dict[str, int]) -> None:  # fmt: skip
        """Train one epoch, validate it, log it, keep the best and the last state."""
        st, s = self.state, self.s
        t1 = time.perf_counter()
        loss_t = train_epoch(st.trainer, st.optimizer, data.images, data.masks,
                             loss_fn=self.loss_fn, batch_size=s.batch_size,
                             shuffle=st.generators["shuffle"],
                             augmenter=self.augmenter if s.augment.enabled else None,
                             runtime=self.rt, augment_mask=data.augment_mask)  # fmt: skip
        loss = float(loss_t)  # host-device sync point: once per epoch
        self.trained(cycle, epoch, data, loss, time.perf_counter() - t1, extra_s, counters)

    def trained(self, cycle: int, epoch: int, data: CycleData, loss: float, train_s: float,
                extra_s: float, counters: dict[str, int]) -> None:  # fmt: skip
        """After an epoch's training (alone, or in an ensemble): check the loss, validate,
        log, keep the best and the last state."""
        st, s = self.state, self.s
        t1 = time.perf_counter()
        if not math.isfinite(loss):
            raise PhaseFailed(
                f"{self.phase.label}: the training loss became {loss} in cycle {cycle}, epoch "
                f"{epoch}; stopped, the last good checkpoint (epoch {st.epoch}) is kept. Lower "
                "train.lr or check the data", cycle=cycle, epoch=epoch)  # fmt: skip
        kept = self.phase.kind != "standard" and epoch in s.convergence_at
        per_slice = evaluate_slices(st.model, self.val, s.eval_batch_size, self.rt,
                                    None if kept else EPOCH_METRICS)  # fmt: skip
        self.metrics = _summary(per_slice)
        st.epoch = epoch
        step_s = train_s + time.perf_counter() - t1
        st.seconds += step_s
        record = EpochRecord(phase=self.phase.kind, branch=None if self.phase.kind == "standard"
                             else self.phase.label, seed=self.phase.seed, cycle=cycle,
                             epoch=epoch, loss=loss, metrics=self.metrics,
                             seconds=step_s + extra_s,
                             images_per_s=data.images.shape[0] / train_s if train_s > 0 else None,
                             train_images=int(data.images.shape[0]), counters=counters)  # fmt: skip
        self.save(cycle, epoch, record, per_slice)

    def save(self, cycle: int, epoch: int, record: EpochRecord, per_slice: dict) -> None:
        """The epoch's files (rank 0 only): its record, convergence, best, average, last."""
        st, p = self.state, self.phase.paths
        if _better(self.metrics, st.best):
            st.best = Best(epoch, cycle, self.metrics)
            if self.leader:
                write_weights(p, p.best, st.weights(self.phase.meta, epoch, cycle))
        if self.leader:
            self.log.write(record)
            for observe in self.observers:
                observe(record)
            if self.phase.kind != "standard" and epoch in self.s.convergence_at:
                write_convergence(p, epoch, per_slice, self.val)
            if self.average_from is not None and epoch >= self.average_from:
                write_weights(p, p.avg(epoch), Weights(st.model.state_dict()))
            if epoch % self.s.checkpoint_every == 0 or epoch == self.phase.epochs:
                # a resumed job trains the epochs since this one again (the same result)
                write_training_state(p, st.checkpoint(self.rt, self.phase))
        self.bar.update(cycle=cycle, loss=record.loss, dsc=self.metrics.get(SELECT, math.nan))

    def finish(self) -> PhaseOutcome:
        """Select the checkpoint the phase is scored with; its files are complete on return."""
        st, p, s, phase = self.state, self.phase.paths, self.s, self.phase
        self.bar.close()
        if st.best is None:  # no epochs: the start weights are the phase's result
            st.best = Best(0, 0, _summary(evaluate_slices(st.model, self.val, s.eval_batch_size,
                                                          self.rt, EPOCH_METRICS)))  # fmt: skip
            if self.leader:
                write_weights(p, p.best, st.weights(phase.meta, 0, 0))
                write_training_state(p, st.checkpoint(self.rt, phase))
        selected, selected_epoch = p.best.name, st.best.epoch
        if s.checkpoint == "last":
            selected, selected_epoch = p.last.name, st.epoch
        elif s.checkpoint == "average" and phase.epochs:
            total = phase.epochs
            epochs = list(range(max(1, total - s.average_last + 1), total + 1))
            if self.leader:  # the average of rank 0's files
                model = average_weights(p, epochs, self.rt.device)
                write_weights(p, p.average, Weights(model, phase.meta, epochs=epochs))
            selected, selected_epoch = p.average.name, None
        if self.rt.ddp is not None:
            self.rt.ddp.check_same(st.model, f"{phase.label}, end of training")
            self.rt.ddp.barrier()  # rank 0's files are complete before any rank reads them
        self.bar.note(f"done: best val DSC {st.best.metrics.get(SELECT, math.nan):.2f} at epoch "
                      f"{st.best.epoch}; scoring {selected}; {st.seconds:.1f} s")  # fmt: skip
        return PhaseOutcome(phase.epochs, st.best, selected, selected_epoch, st.seconds,
                            dict(self.counters))  # fmt: skip


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
    observers: Sequence[Callable[[EpochRecord], None]] = (),
) -> PhaseOutcome:
    """Train ``phase`` to its end (continuing from ``last.pt`` when ``resume``).

    ``observers`` are called with every epoch's record after it is logged (experiment
    tracking, e.g. TensorBoard); the run folder stays the source of truth.

    Raises:
        PhaseFailed: the training loss or an attribution became non-finite; ``last.pt`` still
            holds the last good epoch.
    """
    state = _open(phase, new_model, schedule, runtime, resume)
    run = _Run(phase, state, val, schedule, runtime, quiet, observers)
    first = 1
    for cycle, n_epochs in phase.cycles:
        last = first + n_epochs - 1
        if state.epoch < last:
            run.cycle(cycle, first, last, train)
        first = last + 1
    return run.finish()
