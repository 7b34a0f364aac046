"""Before any job: the plan as this process runs it, the data, and the checks of the folder.

Every process of a study (one, a torchrun rank, a ``--shard``) goes through the same steps:
:func:`for_process` (DDP on or off), :func:`load_data`, :func:`preflight` (which jobs are
this process's, what the run folder holds of them, ``--force`` and ``--resume``) and the
run-level files (:func:`write_run_files`). Under torchrun rank 0 makes the checks for every
job, moves folders aside and writes the run-level files while the others wait; every rank then
gets rank 0's answer, or raises rank 0's error.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ada_core.config import TrainConfig
from ada_core.data import SliceSet
from ada_core.engine.data import StudyData, load_study_data
from ada_core.engine.ddp import DataParallel
from ada_core.engine.distributed import Processes, Remote, failed_stamp
from ada_core.engine.schedule import assign, job_cost
from ada_core.engine.jobs import Job, JobState, inspect, set_aside
from ada_core.engine.keys import describe_diff, diff
from ada_core.engine.plan import RunPlan
from ada_core.errors import ConfigError, DataError
from ada_core.runfolder import (
    EvaluationRecord,
    JobPaths,
    PersonRecord,
    RunLayout,
    ScheduleRecord,
    StudyBranch,
    StudyJob,
    StudyRecord,
    read_record,
    write_json,
    write_record,
    write_text,
)

__all__ = ["check_same_study", "for_process", "header", "load_data", "persons", "preflight",
           "study_record", "write_run_files"]


def for_process(plan: RunPlan, procs: Processes, train: TrainConfig) -> RunPlan:
    """``plan`` with this rank's share of data-parallel training (``train.ddp``).

    The number of processes enters the standard key: it changes the batches each rank sees.

    Raises:
        ConfigError: ``train.batch_size`` does not divide by the number of processes.
    """
    if not train.ddp:
        return plan
    world = procs.world
    if train.batch_size % world:
        lower, upper = (train.batch_size // world) * world, (train.batch_size // world + 1) * world
        raise ConfigError(
            f"train.batch_size = {train.batch_size} does not split over {world} processes "
            f"(train.ddp): each global batch is shared out equally; use a multiple of {world}, "
            f"e.g. {lower or upper} or {upper}"
        )
    runtime = dataclasses.replace(plan.runtime, ddp=DataParallel(procs.rank, world, procs.group))
    settings = {**plan.standard_settings, "ddp_processes": world}
    return dataclasses.replace(plan, runtime=runtime, standard_settings=settings)


def load_data(plan: RunPlan, procs: Processes) -> StudyData:
    """:func:`~ada_core.engine.data.load_study_data`; under torchrun rank 0 first (it fills
    the slice cache the others then read), and an error of rank 0 raised on every rank."""
    if not procs.collective:
        return load_study_data(plan)
    box: dict[str, StudyData] = {}

    def first() -> None:
        box["data"] = load_study_data(plan)

    procs.agree(first)
    return box["data"] if procs.leader else load_study_data(plan)


def header(plan: RunPlan, data: StudyData) -> str:
    fold = next(iter(data.parts.values()))
    sizes = ", ".join(f"{len(fold[k])} {k}" for k in ("train", "val", "test") if len(fold[k]))
    folds = f" x {len(data.parts)} folds" if len(data.parts) > 1 else ""
    return (
        f"run {plan.name!r} on {plan.runtime.device}: seeds {list(plan.seeds)}{folds}; "
        f"{sizes} slices of {tuple(fold['train'].images.shape[-2:])}; "
        f"branches {[b.label for b in plan.branches]}"
    )


def persons(part: SliceSet) -> list[PersonRecord]:
    """The persons of one part: their sites, scans (subjects) and slices."""
    found: dict[str, dict] = {}
    for person, subject, site in zip(part.group, part.subject, part.site, strict=True):
        rec = found.setdefault(person, {"sites": {}, "subjects": {}, "slices": 0})
        rec["sites"][site] = None
        rec["subjects"][subject] = None
        rec["slices"] += 1
    return [PersonRecord(person=p, sites=list(r["sites"]), subjects=list(r["subjects"]),
                         slices=r["slices"]) for p, r in sorted(found.items())]  # fmt: skip


def study_record(plan: RunPlan, jobs: Sequence[Job], data: StudyData) -> StudyRecord:
    """``study.json``: what ``ada aggregate`` needs to read the run folder alone."""
    s, ev = plan.schedule, plan.evaluation
    return StudyRecord(
        name=plan.name, mode=plan.mode, device=str(plan.runtime.device), seeds=list(plan.seeds),
        folds=list(data.parts),
        branches=[StudyBranch(label=b.label, method=b.method, title=b.title, control=b.control,
                              kind=b.kind, settings=b.settings) for b in plan.branches],
        jobs=[StudyJob(label=j.label, seed=j.replicate.seed, fold=j.replicate.fold,
                       path=str(j.paths.rel), key=j.key, eval_key=j.eval_key(plan)) for j in jobs],
        slices={f: {k: len(v) for k, v in p.items()} for f, p in data.parts.items()},
        persons={f: {k: persons(v) for k, v in p.items()} for f, p in data.parts.items()},
        extra_sets=list(data.extra),
        schedule=ScheduleRecord(standard_epochs=s.standard_epochs, cycles=s.cycles,
                                ada_epochs=s.ada_epochs, checkpoint=s.checkpoint,
                                average_last=s.average_last,
                                convergence_at=list(s.convergence_at)),
        evaluation=EvaluationRecord(robustness=ev.robustness, robustness_size=ev.size,
                                    robustness_margin_mm=ev.margin_mm,
                                    context_margin_mm=ev.context_margin_mm),
        analysis=plan.analysis,
        settings={"standard": plan.standard_settings, "branch": plan.branch_settings,
                  "eval": plan.eval_settings},
    )  # fmt: skip


def check_same_study(plan: RunPlan, record: StudyRecord) -> None:
    """Refuse a process (a shard) whose settings differ from the study already in the folder.

    Raises:
        ConfigError: listing every difference as ``key: old -> new``.
    """
    layout = RunLayout(plan.run_dir)
    if not layout.study.is_file():
        return
    try:
        old = read_record(layout.study, StudyRecord)
    except DataError:
        return  # a damaged study.json is rewritten from this (complete) plan
    mine = record.model_dump(mode="json", include={"seeds", "folds", "branches", "settings"})
    theirs = old.model_dump(mode="json", include={"seeds", "folds", "branches", "settings"})
    rows = diff(theirs, mine)
    if rows:
        raise ConfigError(
            f"this shard's settings differ from the study in {plan.run_dir} (its study.json, "
            f"written by another shard):\n{describe_diff(rows)}\nRun every shard with the same "
            "config and --set values; to replace the study, run it again with --force (the old "
            "results are kept aside) or give it another name"
        )


def write_run_files(plan: RunPlan, jobs: Sequence[Job], data: StudyData) -> None:
    """The run-level files: ``config.toml``, ``config.json`` and ``study.json``."""
    layout = RunLayout(plan.run_dir)
    write_text(layout.config_toml, layout.root, plan.config_toml)
    write_json(layout.config_json, layout.root, plan.config_json)
    write_record(layout.study, layout.root, study_record(plan, jobs, data))


def _reopen(states: list[JobState]) -> None:
    """A standard phase to repair gives up its ``done.json`` before anyone reads it: a branch
    run elsewhere must wait for the repaired ``last.pt``, not start from the damaged one."""
    for js in states:
        p = js.job.paths
        if js.state == "repair" and p.done.is_file():
            os.replace(p.done, p.done_prev)


def _checked(plan: RunPlan, jobs: list[Job], *, resume: bool, force: bool,
             reuse_standard: bool) -> list[JobState]:  # fmt: skip
    states = inspect(plan, jobs, resume=resume, force=force, reuse_standard=reuse_standard)
    set_aside(plan, states, resume=resume, force=force)
    _reopen(states)
    return states


def preflight(
    plan: RunPlan,
    jobs: list[Job],
    data: StudyData,
    procs: Processes,
    *,
    resume: bool,
    force: bool,
    reuse_standard: bool,
) -> tuple[list[JobState], dict[JobPaths, Remote]]:
    """This process's jobs, checked, and the standard phases it waits for.

    One process, or DDP: every job. torchrun: rank 0 checks every job (the answer every rank
    would get: nobody has started yet), sets folders aside and writes the run-level files,
    then every rank takes its share (:func:`~ada_core.engine.schedule.assign`). A shard
    checks its own jobs (other shards may be at work on theirs: an unfinished job of theirs
    is theirs to resume) and the standard phases its branches need (their settings must
    match); shard 0 writes the run-level files.

    Returns:
        The states of this process's jobs, in the order it runs them, and for each standard
        phase another process runs, who runs it and the ``failed.json`` already there.

    Raises:
        ConfigError: what :func:`~ada_core.engine.jobs.inspect` refuses; more processes
            than jobs.
    """
    options = {"resume": resume, "force": force, "reuse_standard": reuse_standard}
    if procs.kind == "single" or plan.runtime.ddp is not None:
        mine, owner = list(range(len(jobs))), [procs.rank] * len(jobs)
    else:
        n_train = {fold: len(p["train"]) for fold, p in data.parts.items()}
        costs = [job_cost(plan, j, n_train[j.replicate.fold]) for j in jobs]
        split = assign(jobs, costs, procs.world)
        mine = split[procs.rank]
        owner = [0] * len(jobs)
        for r, indices in enumerate(split):
            for i in indices:
                owner[i] = r
    if procs.collective:

        def lead() -> list[tuple[str, str]]:
            states = _checked(plan, jobs, **options)
            write_run_files(plan, jobs, data)
            print(header(plan, data), flush=True)
            return [(s.state, s.detail) for s in states]

        answer = procs.agree(lead)
        everyone = [JobState(j, st, d) for j, (st, d) in zip(jobs, answer, strict=True)]  # type: ignore[arg-type]
        states = [everyone[i] for i in mine]
    else:
        own = [jobs[i] for i in mine]
        if procs.kind == "shard":
            if not force:
                check_same_study(plan, study_record(plan, jobs, data))
            folders = {j.paths for j in own}
            needed = {j.paths.standard for j in own if j.branch is not None}
            deps = [j for j in jobs if j.branch is None and j.paths in needed - folders]
            if deps:  # refuses the changed settings their shard will refuse
                inspect(plan, deps, resume=True, force=force, reuse_standard=reuse_standard)
        states = _checked(plan, own, **options)
        if procs.leader:
            write_run_files(plan, jobs, data)
        print(header(plan, data), flush=True)
    if procs.world > 1 and plan.runtime.ddp is None:
        titles = ", ".join(jobs[i].title for i in mine)
        print(f"{procs.name()}: {len(mine)} of {len(jobs)} jobs: {titles}", flush=True)
    if plan.runtime.leader:
        for js in states:
            if js.state == "finished":
                print(f"{js.job.title}: reusing the finished job in {js.job.folder}", flush=True)
    index = {j.paths: i for i, j in enumerate(jobs)}
    local = {js.job.paths for js in states}
    remote: dict[JobPaths, Remote] = {}
    for js in states:
        std = js.job.paths.standard
        if js.job.branch is not None and std not in local and std not in remote:
            remote[std] = Remote(procs.name(owner[index[std]]), failed_stamp(std))
    return states, remote
