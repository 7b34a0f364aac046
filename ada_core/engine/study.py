"""``run_study``: the short driver over the run plan.

plan (every check) -> lock the run folder -> load the data once -> the jobs of every
replicate (fold x seed): its standard phase, then its branches -> score each job's selected
checkpoint -> :func:`~ada_core.engine.aggregate.aggregate` (results.csv, summary.json,
summary.txt). A job that fails (non-finite loss or saliency, or any error inside it) is
recorded in its ``failed.json`` and the others still run; :class:`StudyResult` lists them.

Under torchrun or ``--shard`` each process runs its share of the jobs
(:mod:`ada_core.engine.distributed`); with ``train.ddp`` every process runs every job,
data-parallel (:mod:`ada_core.engine.ddp`). docs/distributed.md tells the whole story.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from ada_core._allocator import keep_freed_memory
from ada_core._version import __version__
from ada_core.config import ExperimentConfig
from ada_core.engine.data import StudyData, check_data, load_study_data
from ada_core.engine.distributed import (
    Processes,
    Remote,
    StandardUnavailable,
    open_processes,
    wait_for_standard,
)
from ada_core.engine.ensemble_run import EnsembleJobs, check_processes
from ada_core.engine.evaluation import convergence_blocks, score_checkpoint
from ada_core.engine.firstcycle import shared_first_cycle
from ada_core.engine.jobs import Job, JobState, plan_jobs, prepare_folder
from ada_core.engine.phase import Phase, PhaseFailed, PhaseOutcome, run_phase
from ada_core.engine.plan import RunPlan, build_plan
from ada_core.engine.preflight import for_process, load_data, preflight
from ada_core.errors import AdaError
from ada_core.registry import Registry
from ada_core.runfolder import (
    BestRecord,
    DoneRecord,
    EpochRecord,
    EvalSummary,
    FailedRecord,
    JobPaths,
    RunLayout,
    RunLock,
    StorageError,
    job_lock,
    read_record,
    read_weights,
    remove_stale_temporaries,
    write_record,
    write_rows,
)
from ada_core.runfolder._io import atomic_write

log = logging.getLogger(__name__)

__all__ = [
    "JobObserver",
    "ObserverFactory",
    "StudyData",
    "StudyResult",
    "check_data",
    "execute",
    "load_study_data",
    "run_study",
]


@dataclass
class StudyResult:
    """What one process of a study did.

    Attributes:
        run_dir: the run folder.
        failed: failure messages (on rank 0 of torchrun: every rank's).
        text: the summary (``summary.txt``) when this process aggregated, else a note.
        aggregated: whether this process aggregated (one process; rank 0 of torchrun);
            a ``--shard`` never does: ``ada aggregate RUN`` after every shard has finished.
    """

    run_dir: Path
    failed: list[str] = field(default_factory=list)
    text: str = ""
    aggregated: bool = True


def checkpoint_meta(plan: RunPlan, job: Job, data: StudyData | None = None) -> dict[str, object]:
    """What every weights checkpoint of ``job`` carries besides the weights (with histogram
    standardisation, its fold's ``standard_scale``, which ``ada predict`` applies)."""
    scale = None if data is None else data.scales.get(job.replicate.fold)
    return ({"standard_scale": scale} if scale is not None else {}) | {
        "ada_version": __version__,
        "model": plan.model_spec,
        "preprocess": plan.preprocess.model_dump(mode="json"),
        "label": job.label,
        "seed": job.replicate.seed,
        "fold": job.replicate.fold,
    }


def _phase(plan: RunPlan, job: Job, data: StudyData | None = None) -> Phase:
    s = plan.schedule
    b = job.branch
    meta = checkpoint_meta(plan, job, data)
    if b is None:
        return Phase("standard", "standard", job.paths, job.replicate.seed,
                     [(0, s.standard_epochs)], meta=meta)  # fmt: skip
    start = job.paths.standard
    cycles = [(c, s.ada_epochs) for c in range(1, s.cycles + 1)]
    if b.new_attributor is None:
        return Phase(b.label, "control", job.paths, job.replicate.seed, cycles,
                     repeat=b.repeat, start=start, meta=meta)  # fmt: skip
    return Phase(b.label, "ada", job.paths, job.replicate.seed, cycles,
                 attributor=b.new_attributor(), mask=plan.new_mask(), start=start, meta=meta)  # fmt: skip


class JobObserver(Protocol):
    """Follows one job (experiment tracking): built by the caller's factory, per job."""

    def on_epoch(self, record: EpochRecord) -> None: ...

    def on_end(self, job: JobPaths) -> None: ...


#: ``observe(job) -> JobObserver | None``: what `run_study(observe=...)` takes.
ObserverFactory = Callable[[Job], "JobObserver | None"]


def _train(plan: RunPlan, js: JobState, data: StudyData, quiet: bool,
           observer: JobObserver | None = None, phase: Phase | None = None) -> None:  # fmt: skip
    job = js.job
    parts = data.parts[job.replicate.fold]
    outcome = run_phase(
        _phase(plan, job, data) if phase is None else phase,
        parts["train"],
        parts["val"],
        plan.schedule,
        plan.runtime,
        plan.new_model,
        resume=_resumes(js),
        quiet=quiet,
        observers=() if observer is None else (observer.on_epoch,),
    )
    if plan.runtime.leader:
        _done(job, outcome)


def _resumes(js: JobState) -> bool:
    return js.state in ("interrupted", "failed", "repair")


def _done(job: Job, outcome: PhaseOutcome) -> None:
    p = job.paths
    best = outcome.best
    write_record(p.done, p.root, DoneRecord(
        key=job.key, epochs=outcome.epochs,
        best=BestRecord(epoch=best.epoch, cycle=best.cycle, metrics=best.metrics),
        selected=outcome.selected, selected_epoch=outcome.selected_epoch,
        seconds=outcome.seconds, counters=outcome.counters,
        threads=torch.get_num_threads()))  # fmt: skip


def _score(plan: RunPlan, job: Job, data: StudyData, quiet: bool = True) -> None:
    p = job.paths
    ev = p.eval(job.eval_key(plan))
    if ev.summary.is_file():  # written last: the job is scored (inspect checked its rows)
        return
    runtime = dataclasses.replace(plan.runtime, ddp=None)  # rank 0 scores alone
    done = read_record(p.done, DoneRecord)
    model = plan.new_model().to(runtime.device)
    model.load_state_dict(read_weights(p.selected(done.selected), runtime.device).model)
    parts = data.parts[job.replicate.fold]
    s = plan.schedule
    scored = score_checkpoint(model, parts, data.extra_for(job.replicate.fold), plan.evaluation, s.eval_batch_size, runtime,
                              label=job.label, quiet=quiet)  # fmt: skip
    blocks = [x.rows() for x in scored] + (convergence_blocks(p) if job.branch is not None else [])
    report = parts["test"] if len(parts["test"]) else parts["val"]
    image = report.images.mean(0)[0].cpu().numpy()
    atomic_write(ev.mean_image, ev.root, lambda f: np.save(f, image, allow_pickle=False))
    digest = write_rows(ev, blocks, seed=job.replicate.seed, fold=job.replicate.fold,
                        branch=job.label)  # fmt: skip
    spacing = report.spacing.double().mean(0).tolist()
    write_record(ev.summary, ev.root, EvalSummary(
        sets={x.name: x.summary() for x in scored}, rows=digest.rows, rows_sha256=digest.sha256,
        report_part="test" if len(parts["test"]) else "val", spacing_mm=tuple(spacing),
        positions=next((x.positions for x in scored if x.positions is not None), None)))  # fmt: skip


def _fail(job: Job, error: BaseException, where: str, write: bool = True) -> str:
    message = f"{job.title} failed during {where}: {error}"
    if write:
        p = job.paths
        write_record(p.failed, p.root, FailedRecord(
            key=job.key, error=str(error), where=where, cycle=getattr(error, "cycle", None),
            epoch=getattr(error, "epoch", None), time=time.strftime("%Y-%m-%d %H:%M:%S"),
            traceback="".join(traceback.format_exception(error))))  # fmt: skip
        print(f"FAILED: {message}", flush=True)
    return message


class _SharedFirstCycle:
    """The branch phases of each replicate, built when its first branch is about to train,
    with their first-cycle saliency from one shared pass (:mod:`ada_core.engine.firstcycle`)."""

    def __init__(self, plan: RunPlan, states: list[JobState], data: StudyData) -> None:
        self.plan, self.states, self.data = plan, states, data
        self.phases: dict[JobPaths, Phase] = {}
        self.done: set[JobPaths] = set()  # standard phases whose branches were prepared

    def phase(self, js: JobState) -> Phase | None:
        job = js.job
        if job.branch is None or not self.plan.runtime.leader:
            return None
        std = job.paths.standard
        if std not in self.done:
            self.done.add(std)
            mine = [(s, _phase(self.plan, s.job, self.data)) for s in self.states
                    if s.job.branch is not None and s.job.paths.standard == std]  # fmt: skip
            train = self.data.parts[job.replicate.fold]["train"]
            given = shared_first_cycle(self.plan, mine, train)
            for s, ph in mine:
                ph.first_saliency = given.get(ph.paths)
                self.phases[s.job.paths] = ph
        return self.phases.pop(job.paths, None)


def execute(plan: RunPlan, states: list[JobState], data: StudyData, *, quiet: bool,
            debug: bool = False, observe: ObserverFactory | None = None,
            remote: dict[JobPaths, Remote] | None = None, wait_s: float = 0.0) -> list[str]:  # fmt: skip
    """Train and score the given jobs in order; returns the failure messages.

    A branch whose standard phase is in ``remote`` (run by another process) first waits for
    it (at most ``wait_s`` seconds). Under DDP every rank runs this with the same jobs and
    only rank 0 writes the job folders.
    """
    leader = plan.runtime.leader
    # Under DDP a failure must be one every rank meets (a non-finite loss, an attribution
    # error: both agreed on); anything else stops the study and torchrun stops every rank.
    caught: tuple[type[BaseException], ...] = (PhaseFailed, AdaError)
    if plan.runtime.ddp is None:
        caught += (RuntimeError, ValueError)
    failed: list[str] = []
    broken_standard: set[JobPaths] = set()
    unavailable: dict[JobPaths, str] = {}
    shared = _SharedFirstCycle(plan, states, data)
    together = None if not plan.ensemble else EnsembleJobs(
        plan, states, data, quiet=quiet, phase_of=lambda s: shared.phase(s) or _phase(plan, s.job),
        done=_done, observe=observe, caught=caught)  # fmt: skip
    for js in states:
        job = js.job
        std = job.paths.standard
        if job.branch is not None and std in broken_standard:
            failed.append(f"{job.title} not run: the standard phase of {job.replicate.title} failed")
            continue
        if job.branch is not None and remote and std in remote and std not in unavailable:
            try:
                wait_for_standard(std, job.settings["standard"], owner=remote[std].owner,
                                  timeout_s=wait_s, stale=remote[std].stale)  # fmt: skip
            except StandardUnavailable as e:
                unavailable[std] = str(e)
        if job.branch is not None and std in unavailable:
            failed.append(f"{job.title} not run: {unavailable[std]}")
            print(f"NOT RUN: {failed[-1]}", flush=True)
            continue
        try:
            if leader:
                prepare_folder(js)
            if js.state != "finished" and together is not None and job.branch is not None:
                together.train(js)
            elif js.state != "finished":
                observer = None if observe is None or not leader else observe(job)
                with job_lock(job.paths) if leader else contextlib.nullcontext():
                    if leader:  # a killed run's temporaries, never another's
                        remove_stale_temporaries(job.folder, job.paths.root)
                    _train(plan, js, data, quiet, observer, shared.phase(js))
                if observer is not None:
                    observer.on_end(job.paths)
            if leader:
                _score(plan, job, data, quiet)
        except StorageError:
            raise  # a full disk is not the job's failure: stop, naming the file
        except caught as e:
            if debug and not isinstance(e, PhaseFailed):
                raise
            failed.append(_fail(job, e, "training" if js.state != "finished" else "evaluation", leader))
            if job.branch is None:
                broken_standard.add(job.paths)
    return failed


def run_study(
    config: ExperimentConfig,
    registry: Registry,
    *,
    mode: Literal["train", "compare"] = "compare",
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    source: str = "",
    debug: bool = False,
    observe: ObserverFactory | None = None,
    shard: str | None = None,
) -> StudyResult:
    """Run (or continue) the study ``config`` describes and aggregate it.

    ``observe(job)`` may return a :class:`JobObserver` that follows each trained job (e.g.
    TensorBoard logging); the engine itself writes only the run folder.

    Under torchrun this process runs its share of the jobs and rank 0 aggregates once every
    rank has finished; ``shard = "I/N"`` runs shard I's share and does not aggregate.

    Raises:
        ConfigError: any check of :func:`~ada_core.engine.plan.build_plan`; changed or
            unfinished work in the run folder without ``force`` / ``resume``; a bad
            ``shard``, ``train.ddp`` without torchrun, a world size that does not fit.
        DataError: the data cannot be split as configured.
        RunLockedError: another process holds the run folder.
    """
    t = config.train
    # Every process that trains or scores (alone, a torchrun rank, a shard) runs here: its
    # thread count is the config's, not the machine's, so CPU results do not depend on it.
    # Restored after, for the caller (a notebook) that set its own.
    threads = torch.get_num_threads()
    torch.set_num_threads(t.threads)
    keep_freed_memory()  # the same numbers, a quarter less wall on the CPU (_allocator.py)
    procs = None
    try:
        procs = open_processes(shard, ddp=t.ddp, device=t.device, timeout_h=t.wait_timeout_h,
                               given=t.model_fields_set)  # fmt: skip
        plan = for_process(build_plan(config, registry, mode=mode, source=source), procs, t)
        if plan.ensemble:
            check_processes(procs.kind)
        if procs.leader:
            for note in plan.notes:
                log.warning("%s", note)
        with RunLock(RunLayout(plan.run_dir), shared=procs.kind != "single"):
            data = load_data(plan, procs)
            jobs = plan_jobs(plan, data.replicates, data.fingerprint)
            states, remote = preflight(plan, jobs, data, procs, resume=resume, force=force,
                                       reuse_standard=t.reuse_standard)  # fmt: skip
            failed = execute(plan, states, data, quiet=quiet, debug=debug, observe=observe,
                             remote=remote, wait_s=t.wait_timeout_h * 3600)  # fmt: skip
            return _finish(plan, procs, failed, len(states))
    finally:
        if procs is not None:
            procs.close()
        torch.set_num_threads(threads)


def _finish(plan: RunPlan, procs: Processes, failed: list[str], n_jobs: int) -> StudyResult:
    from ada_core.engine.aggregate import aggregate

    if procs.kind == "shard":
        note = (f"{procs.name()}: {n_jobs - len(failed)} of {n_jobs} jobs finished here. Once "
                f"every shard has finished: ada aggregate {plan.run_dir}\n")  # fmt: skip
        return StudyResult(plan.run_dir, failed, note, aggregated=False)
    if procs.collective:
        everyone = procs.gather(failed)  # also the barrier: every rank has finished its jobs
        if not procs.leader:
            return StudyResult(plan.run_dir, failed, "", aggregated=False)
        if plan.runtime.ddp is None:
            failed = [m for messages in everyone for m in messages]
    summary = aggregate(plan.run_dir)
    return StudyResult(plan.run_dir, failed, summary.text)
