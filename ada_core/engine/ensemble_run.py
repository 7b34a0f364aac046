"""``train.ensemble``: a replicate's branch jobs trained together, each in its own folder.

Each branch is opened exactly as :func:`~ada_core.engine.phase.run_phase` opens it (fresh from
its standard phase's ``last.pt``, or its own ``last.pt`` under ``--resume``) and keeps its own
:class:`~ada_core.engine.phase.TrainState` and phase run: cycle data (its own attribution of
its own weights, its own masks), validation, ``metrics.jsonl``, ``best.pt``, ``last.pt``,
``done.json`` are written by the same code as a branch trained alone. Only the epoch's
training is shared: the members whose epochs hold as many images and who stand at the same
epoch are stacked (:class:`~ada_core.engine.ensemble.StackedModel`), trained one epoch and
unstacked again, weights, batch-norm buffers, Adam state and random streams into each
member's own state. A member alone in its group trains as a branch on its own.

Torch's global generator is what a branch's dropout draws from and what its ``last.pt``
records: each member keeps its own state of it, installed around everything it does.
A member that fails (non-finite loss, attribution error) leaves the group; the others go on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ada_core.data import SliceSet
from ada_core.engine import ensemble
from ada_core.engine.cycle import CycleData
from ada_core.engine.jobs import prepare_folder
from ada_core.engine.loop import Runtime
from ada_core.engine.phase import Phase, PhaseOutcome, _open, _Run
from ada_core.engine.plan import Schedule
from ada_core.engine.state import capture_rng, restore_rng
from ada_core.errors import AdaError, ConfigError
from ada_core.interfaces import SegModel
from ada_core.runfolder import (
    EpochRecord,
    JobPaths,
    StorageError,
    job_lock,
    remove_stale_temporaries,
)

if TYPE_CHECKING:
    from ada_core.engine.data import StudyData
    from ada_core.engine.jobs import Job, JobState
    from ada_core.engine.plan import RunPlan

__all__ = ["EnsembleJobs", "check_processes", "run_ensemble"]

Result = PhaseOutcome | BaseException


def check_processes(kind: str) -> None:
    """Refuse ``train.ensemble`` in a study of several processes.

    Raises:
        ConfigError: under torchrun or ``--shard`` (their job split deals out single jobs).
    """
    if kind != "single":
        raise ConfigError(
            "train.ensemble = true trains every branch of a seed in one process, but this run "
            f"is split over processes ({kind}); run it as one process, or set "
            "train.ensemble = false to split the branches over processes"
        )


@dataclass
class _Member:
    run: _Run
    rng: dict[str, Any]  # its own state of torch's global generator(s)
    data: CycleData | None = None
    prep_s: float = 0.0
    counters: dict[str, int] | None = None

    @property
    def paths(self) -> JobPaths:
        return self.run.phase.paths

    def images(self, train: SliceSet) -> int:
        ph = self.run.phase
        erases = ph.attributor is not None and ph.mask is not None
        return len(train) * (2 if erases else ph.repeat)


@contextlib.contextmanager
def _own(member: _Member, device: torch.device) -> Iterator[None]:
    """Torch's global generators hold the member's own state while it works."""
    restore_rng(member.rng, {}, device)
    try:
        yield
    finally:
        member.rng = capture_rng({}, device)


def _dropout_generator(state: dict[str, Any], device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.set_state(state["_cuda" if device.type == "cuda" else "_torch"])
    return g


def _epoch(group: list[_Member], schedule: Schedule, runtime: Runtime) -> tuple[list[float], float]:
    """One epoch of every member at once; each member's state updated as if alone."""
    states = [m.run.state for m in group]
    models = [s.model for s in states]
    stacked = ensemble.StackedModel(models)
    optimizer = runtime.optimizer(list(stacked.params.values()), schedule.lr)
    ensemble.stack_optimizer(optimizer, [s.optimizer for s in states])
    dropouts = [_dropout_generator(m.rng, runtime.device) for m in group]
    t0 = time.perf_counter()
    losses = ensemble.train_epoch(
        stacked, optimizer, [m.data.images for m in group], [m.data.masks for m in group],
        loss_fn=group[0].run.loss_fn, batch_size=schedule.batch_size,
        shuffles=[s.generators["shuffle"] for s in states], dropouts=dropouts,
        augmenters=[m.run.augmenter for m in group] if schedule.augment.enabled else None,
        runtime=runtime, augment_masks=[m.data.augment_mask for m in group],
    ).tolist()  # host-device sync point: once per epoch
    train_s = time.perf_counter() - t0
    stacked.store(models)
    ensemble.unstack_optimizer(optimizer, [s.optimizer for s in states])
    for m, g in zip(group, dropouts, strict=True):
        m.rng["_cuda" if runtime.device.type == "cuda" else "_torch"] = g.get_state()
    return losses, train_s


class _Group:
    """Members at one epoch with epochs of one size, trained together."""

    def __init__(self, members: list[_Member], train: SliceSet, schedule: Schedule,
                 runtime: Runtime, caught: tuple[type[BaseException], ...],
                 results: dict[JobPaths, Result]) -> None:  # fmt: skip
        self.live, self.train, self.s, self.rt = members, train, schedule, runtime
        self.caught, self.results = caught, results

    def each(self, work: Callable[[_Member], None]) -> None:
        """``work`` for every live member with its own random state; a failure removes it."""
        for m in list(self.live):
            try:
                with _own(m, self.rt.device):
                    work(m)
            except StorageError:
                raise
            except self.caught as e:
                self.results[m.paths] = e
                self.live.remove(m)

    def run(self) -> None:
        if len(self.live) == 1:  # nothing to batch: the member trains as a branch alone
            self.each(self._alone)
            return
        first = 1
        for cycle, n_epochs in self.live[0].run.phase.cycles:
            last = first + n_epochs - 1
            if self.live and self.live[0].run.state.epoch < last:
                self._cycle(cycle, first, last)
            first = last + 1
        self.each(lambda m: self.results.__setitem__(m.paths, m.run.finish()))

    def _alone(self, m: _Member) -> None:
        first = 1
        for cycle, n_epochs in m.run.phase.cycles:
            last = first + n_epochs - 1
            if m.run.state.epoch < last:
                m.run.cycle(cycle, first, last, self.train)
            first = last + 1
        self.results[m.paths] = m.run.finish()

    def _cycle(self, cycle: int, first: int, last: int) -> None:
        def prepare(m: _Member) -> None:
            m.data, m.prep_s, counters = m.run.prepare(cycle, first, self.train)
            m.counters = dict(counters)

        self.each(prepare)
        for epoch in range(max(first, self.live[0].run.state.epoch + 1) if self.live else 1,
                           last + 1):  # fmt: skip
            if not self.live:
                return
            try:
                losses, train_s = _epoch(self.live, self.s, self.rt)
            except StorageError:
                raise
            except self.caught as e:  # the shared step failed: every member with it
                for m in self.live:
                    self.results[m.paths] = e
                self.live = []
                return
            loss_of = {id(m): loss for m, loss in zip(self.live, losses, strict=True)}

            def trained(m: _Member, epoch: int = epoch, loss_of: dict = loss_of,
                        train_s: float = train_s) -> None:  # fmt: skip
                at_first = epoch == first
                m.run.trained(cycle, epoch, m.data, loss_of[id(m)], train_s,
                              m.prep_s if at_first else 0.0, m.counters if at_first else {})  # fmt: skip

            self.each(trained)
        self.each(lambda m: m.run.cycle_done(cycle))


def run_ensemble(
    phases: Sequence[Phase],
    train: SliceSet,
    val: SliceSet,
    schedule: Schedule,
    runtime: Runtime,
    new_model: Callable[[], SegModel],
    *,
    resume: Collection[JobPaths],
    quiet: bool = False,
    observers: dict[JobPaths, Sequence[Callable[[EpochRecord], None]]] | None = None,
    caught: tuple[type[BaseException], ...] = (AdaError, RuntimeError, ValueError),
) -> dict[JobPaths, Result]:
    """Train the branch ``phases`` of one replicate to their ends, batched where they can be.

    ``resume``: the job folders that continue from their own ``last.pt``.

    Returns:
        job folder -> its :class:`PhaseOutcome`, or the exception (one of ``caught``) that
        stopped it (its last good checkpoint is kept, as for a branch trained alone).
    """
    results: dict[JobPaths, Result] = {}
    members: list[_Member] = []
    for ph in phases:
        try:
            state = _open(ph, new_model, schedule, runtime, ph.paths in resume)
        except StorageError:
            raise
        except caught as e:
            results[ph.paths] = e
            continue
        rng = capture_rng({}, runtime.device)  # as restored from the start (or own) last.pt
        run = _Run(ph, state, val, schedule, runtime, quiet, (observers or {}).get(ph.paths, ()))
        members.append(_Member(run, rng))
    groups: dict[tuple[int, int], list[_Member]] = {}
    for m in members:
        groups.setdefault((m.images(train), m.run.state.epoch), []).append(m)
    for group in groups.values():
        _Group(group, train, schedule, runtime, caught, results).run()
    return results


class EnsembleJobs:
    """The study's side of ``train.ensemble``: when the first unfinished branch job of a
    replicate comes up, every unfinished branch job of that replicate is trained, under all
    their job locks, and each then reports its own outcome (``done.json`` written) or error.

    Args:
        phase_of: the phase a branch job trains (with its shared first-cycle saliency).
        done: writes a finished job's ``done.json``.
        observe: the run's observer factory (experiment tracking), or None.
        caught: the errors that fail a job and not the study.
    """

    def __init__(self, plan: RunPlan, states: list[JobState], data: StudyData, *, quiet: bool,
                 phase_of: Callable[[JobState], Phase],
                 done: Callable[[Job, PhaseOutcome], None], observe: Callable[[Job], Any] | None,
                 caught: tuple[type[BaseException], ...]) -> None:  # fmt: skip
        self.plan, self.states, self.data, self.quiet = plan, states, data, quiet
        self.phase_of, self.done, self.observe, self.caught = phase_of, done, observe, caught
        self.results: dict[JobPaths, Result] = {}

    def train(self, js: JobState) -> None:
        """Train ``js`` (with the rest of its replicate on first call).

        Raises:
            The error that stopped this job (one of ``caught``).
        """
        if js.job.paths not in self.results:
            std = js.job.paths.standard
            members = [s for s in self.states if s.job.branch is not None and s.state != "finished"
                       and s.job.paths.standard == std and s.job.paths not in self.results]  # fmt: skip
            with contextlib.ExitStack() as locks:
                observers: dict[JobPaths, Any] = {}
                for s in members:
                    prepare_folder(s)
                    locks.enter_context(job_lock(s.job.paths))
                    remove_stale_temporaries(s.job.folder, s.job.paths.root)
                    observer = None if self.observe is None else self.observe(s.job)
                    if observer is not None:
                        observers[s.job.paths] = observer
                parts = self.data.parts[js.job.replicate.fold]
                results = run_ensemble(
                    [self.phase_of(s) for s in members], parts["train"], parts["val"],
                    self.plan.schedule, self.plan.runtime, self.plan.new_model,
                    resume={s.job.paths for s in members
                            if s.state in ("interrupted", "failed", "repair")},
                    quiet=self.quiet, caught=self.caught,
                    observers={p: (o.on_epoch,) for p, o in observers.items()})  # fmt: skip
                for s in members:
                    result = results[s.job.paths]
                    if isinstance(result, PhaseOutcome):
                        self.done(s.job, result)
                        if s.job.paths in observers:
                            observers[s.job.paths].on_end(s.job.paths)
                self.results.update(results)
        result = self.results.pop(js.job.paths)
        if isinstance(result, BaseException):
            raise result
