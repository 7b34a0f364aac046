"""``run_study``: the short driver over the run plan.

plan (every check) -> lock the run folder -> load the data once -> the jobs of every
replicate (fold x seed): its standard phase, then its branches -> score each job's selected
checkpoint -> :func:`~ada_core.engine.aggregate.aggregate` (results.csv, summary.json,
summary.txt). A job that fails (non-finite loss or saliency, or any error inside it) is
recorded in its ``failed.json`` and the others still run; :class:`StudyResult` lists them.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ada_core.config import ExperimentConfig
from ada_core.data import SliceSet, load_slices, split_slices
from ada_core.splits import fold_slices, plan_folds
from ada_core.engine.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from ada_core.engine.evaluation import convergence_sets, score_checkpoint, write_rows
from ada_core.engine.jobs import (
    Job,
    JobState,
    Replicate,
    inspect,
    plan_jobs,
    prepare_folder,
    set_aside,
)
from ada_core.engine.lock import RunLock, job_lock
from ada_core.engine.phase import Phase, PhaseFailed, run_phase
from ada_core.engine.plan import RunPlan, build_plan
from ada_core.errors import AdaError, DataError
from ada_core.registry import Registry

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
class StudyData:
    """The slices of a study on the device: per fold its parts, and the extra sets."""

    parts: dict[str, dict[str, SliceSet]]  # fold -> {"train", "val", "test"}
    extra: dict[str, SliceSet]
    replicates: list[Replicate]
    fingerprint: str


@dataclass
class StudyResult:
    run_dir: Path
    failed: list[str] = field(default_factory=list)
    text: str = ""


def _extra_sets(plan: RunPlan) -> dict[str, SliceSet]:
    sets: dict[str, SliceSet] = {}
    for es in plan.eval_sets:
        slices = load_slices(es.dataset, es.preprocess, cache_dir=plan.cache_dir)
        if es.part != "all":
            train, val = split_slices(slices, es.split, key=f"evaluate[{es.label}].split")
            slices = val if es.part == "val" else train
        if len(slices) == 0:
            raise DataError(
                f"evaluate[{es.label!r}] (dataset {es.dataset.name!r}, part {es.part!r}) has no "
                "slices; check its params, preprocess and split"
            )
        sets[es.label] = slices.to(plan.runtime.device)
    return sets


def load_study_data(plan: RunPlan) -> StudyData:
    """Load and split the data once; every part of every fold must be non-empty.

    Raises:
        DataError: a part of a fold (train, validation or a requested test part) has no slice.
    """
    slices = load_slices(plan.dataset, plan.preprocess, cache_dir=plan.cache_dir)
    folds = plan_folds(slices.group, slices.site, plan.split, subjects=slices.subject)
    parts: dict[str, dict[str, SliceSet]] = {}
    replicates = []
    for fold in folds:
        train, val, test = fold_slices(slices, fold)
        for name, part in (("training", train), ("validation", val)):
            if len(part) == 0:
                raise DataError(
                    f"dataset {plan.dataset.name!r}"
                    + (f", fold {fold.name!r}" if fold.name else "")
                    + f": the split left {len(train)} training and {len(val)} validation slices; "
                    f"the engine needs {name} slices (check data.split and the data set size)"
                )
        dev = plan.runtime.device
        parts[fold.name] = {"train": train.to(dev), "val": val.to(dev), "test": test.to(dev)}
        for seed in plan.seeds:
            replicates.append(
                Replicate(
                    fold.name, seed, tuple(sorted(fold.train)), tuple(sorted(fold.val)),
                    tuple(sorted(fold.test)),
                )  # fmt: skip
            )
    return StudyData(parts, _extra_sets(plan), replicates, plan.dataset.fingerprint())


def check_data(plan: RunPlan) -> str:
    """The data checks ``ada config validate`` can make without loading volumes: the data set
    lists labelled subjects and the split gives every fold non-empty parts (in persons).

    Returns:
        A one-line description of the split (persons per part and fold).

    Raises:
        DataError, ConfigError: naming the data set and the split key.
    """
    subjects = [s for s in plan.dataset.subjects() if s.labelled]
    if not subjects:
        raise DataError(f"dataset {plan.dataset.name!r} lists no labelled subject; check its params")
    folds = plan_folds([s.group for s in subjects], [s.site for s in subjects], plan.split,
                       subjects=[s.id for s in subjects])
    parts = []
    for fold in folds:
        if not fold.train or not fold.val:
            raise DataError(
                f"dataset {plan.dataset.name!r}: the split leaves {len(fold.train)} training and "
                f"{len(fold.val)} validation persons" + (f" in fold {fold.name!r}" if fold.name else "")
                + "; the engine needs both (check data.split)"
            )
        sizes = f"{len(fold.train)}/{len(fold.val)}/{len(fold.test)}"
        parts.append(f"{fold.name}: {sizes}" if fold.name else sizes)
    for es in plan.eval_sets:
        if not any(s.labelled for s in es.dataset.subjects()):
            raise DataError(f"evaluate[{es.label!r}]: dataset {es.dataset.name!r} lists no labelled subject")
    return (f"{len(subjects)} labelled subjects; train/val/test persons {', '.join(parts)}; "
            f"{len(plan.seeds)} seed(s), {len(plan.branches)} branches")


def checkpoint_meta(plan: RunPlan, job: Job) -> dict[str, object]:
    """What every weights checkpoint of ``job`` carries besides the weights."""
    import ada_core

    return {
        "ada_version": ada_core.__version__,
        "model": plan.model_spec,
        "preprocess": plan.preprocess.model_dump(mode="json"),
        "label": job.label,
        "seed": job.replicate.seed,
        "fold": job.replicate.fold,
    }


def _phase(plan: RunPlan, job: Job) -> Phase:
    s = plan.schedule
    b = job.branch
    meta = checkpoint_meta(plan, job)
    if b is None:
        return Phase("standard", "standard", job.folder, job.replicate.seed,
                     [(0, s.standard_epochs)], meta=meta)  # fmt: skip
    start = job.folder.parent.parent / "standard" / "last.pt"
    cycles = [(c, s.ada_epochs) for c in range(1, s.cycles + 1)]
    if b.new_attributor is None:
        return Phase(b.label, "control", job.folder, job.replicate.seed, cycles,
                     repeat=b.repeat, start=start, meta=meta)  # fmt: skip
    return Phase(b.label, "ada", job.folder, job.replicate.seed, cycles,
                 attributor=b.new_attributor(), mask=plan.new_mask(), start=start, meta=meta)  # fmt: skip


class JobObserver(Protocol):
    """Follows one job (experiment tracking): built by the caller's factory, per job."""

    def on_epoch(self, record: dict[str, Any]) -> None: ...

    def on_end(self, folder: Path) -> None: ...


#: ``observe(job) -> JobObserver | None``: what `run_study(observe=...)` takes.
ObserverFactory = Callable[[Job], "JobObserver | None"]


def _train(plan: RunPlan, js: JobState, data: StudyData, quiet: bool,
           observer: JobObserver | None = None) -> None:  # fmt: skip
    job = js.job
    parts = data.parts[job.replicate.fold]
    outcome = run_phase(
        _phase(plan, job),
        parts["train"],
        parts["val"],
        plan.schedule,
        plan.runtime,
        plan.new_model,
        resume=js.state in ("interrupted", "failed", "repair"),
        quiet=quiet,
        convergence_at=plan.schedule.convergence_at,
        observers=() if observer is None else (observer.on_epoch,),
    )
    write_json(
        job.folder / "done.json",
        {
            "status": "done",
            "key": job.key,
            "epochs": outcome.epochs,
            "best": vars(outcome.best),
            "selected": outcome.selected,
            "selected_epoch": outcome.selected_epoch,
            "seconds": outcome.seconds,
            "counters": outcome.counters,
        },
    )


def _score(plan: RunPlan, job: Job, data: StudyData) -> None:
    folder = job.folder / "eval" / job.eval_key(plan)
    if (folder / "rows.csv").is_file():
        return
    done = read_json(job.folder / "done.json")
    model = plan.new_model().to(plan.runtime.device)
    model.load_state_dict(load_checkpoint(job.folder / done["selected"], plan.runtime.device)["model"])
    parts = data.parts[job.replicate.fold]
    s = plan.schedule
    scored = score_checkpoint(model, parts, data.extra, plan.evaluation, s.eval_batch_size, plan.runtime)
    conv = convergence_sets(job.folder) if job.branch is not None else []
    report = parts["test"] if len(parts["test"]) else parts["val"]
    write_json(
        folder / "summary.json",
        {"sets": {x.name: x.summary() for x in scored},
         "report_part": "test" if len(parts["test"]) else "val",
         "spacing_mm": [float(v) for v in report.spacing.double().mean(0)],
         **{k: v for x in scored for k, v in x.extra.items()}},
    )  # fmt: skip
    np.save(folder / "mean_image.npy", report.images.mean(0)[0].cpu().numpy())
    write_rows(folder / "rows.csv", scored, conv, seed=job.replicate.seed,
               fold=job.replicate.fold, branch=job.label)  # fmt: skip


def _fail(job: Job, error: BaseException, where: str) -> str:
    info = {
        "status": "failed",
        "key": job.key,
        "error": str(error),
        "where": where,
        "cycle": getattr(error, "cycle", None),
        "epoch": getattr(error, "epoch", None),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "traceback": "".join(traceback.format_exception(error)),
    }
    write_json(job.folder / "failed.json", info)
    message = f"{job.title} failed during {where}: {error}"
    print(f"FAILED: {message}", flush=True)
    return message


def execute(plan: RunPlan, states: list[JobState], data: StudyData, *, quiet: bool,
            debug: bool = False, observe: ObserverFactory | None = None) -> list[str]:  # fmt: skip
    """Train and score the given jobs in order; returns the failure messages."""
    failed: list[str] = []
    broken_standard: set[Path] = set()
    for js in states:
        job = js.job
        if job.branch is not None and job.folder.parent.parent in broken_standard:
            failed.append(f"{job.title} not run: the standard phase of {job.replicate.title} failed")
            continue
        prepare_folder(js)
        try:
            if js.state != "finished":
                observer = None if observe is None else observe(job)
                with job_lock(job.folder):
                    remove_stale_temporaries(job.folder)  # a killed run's, never another's
                    _train(plan, js, data, quiet, observer)
                if observer is not None:
                    observer.on_end(job.folder)
            _score(plan, job, data)
        except (PhaseFailed, AdaError, RuntimeError, ValueError) as e:
            if debug and not isinstance(e, PhaseFailed):
                raise
            failed.append(_fail(job, e, "training" if js.state != "finished" else "evaluation"))
            if job.branch is None:
                broken_standard.add(job.folder.parent)
    return failed


def _header(plan: RunPlan, data: StudyData) -> str:
    fold = next(iter(data.parts.values()))
    sizes = ", ".join(f"{len(fold[k])} {k}" for k in ("train", "val", "test") if len(fold[k]))
    folds = f" x {len(data.parts)} folds" if len(data.parts) > 1 else ""
    return (
        f"run {plan.name!r} on {plan.runtime.device}: seeds {list(plan.seeds)}{folds}; "
        f"{sizes} slices of {tuple(fold['train'].images.shape[-2:])}; "
        f"branches {[b.label for b in plan.branches]}"
    )


def write_study(plan: RunPlan, jobs: Sequence[Job], data: StudyData) -> None:
    """``study.json``: what ``ada aggregate`` needs to read the run folder alone."""
    write_json(
        plan.run_dir / "study.json",
        {
            "schema_version": 1,
            "name": plan.name,
            "mode": plan.mode,
            "device": str(plan.runtime.device),
            "seeds": list(plan.seeds),
            "folds": list(data.parts),
            "branches": [
                {"label": b.label, "method": b.method, "control": b.control, "kind": b.kind,
                 "settings": b.settings}
                for b in plan.branches
            ],  # fmt: skip
            "jobs": [
                {"label": j.label, "seed": j.replicate.seed, "fold": j.replicate.fold,
                 "path": str(j.folder.relative_to(plan.run_dir)), "key": j.key,
                 "eval_key": j.eval_key(plan)}
                for j in jobs
            ],  # fmt: skip
            "slices": {
                f: {k: len(v) for k, v in p.items()} for f, p in data.parts.items()
            },
            "subjects": {
                f: {k: sorted(set(v.subject)) for k, v in p.items()} for f, p in data.parts.items()
            },
            "extra_sets": list(data.extra),
            "schedule": {
                "standard_epochs": plan.schedule.standard_epochs,
                "cycles": plan.schedule.cycles,
                "ada_epochs": plan.schedule.ada_epochs,
                "checkpoint": plan.schedule.checkpoint,
                "average_last": plan.schedule.average_last,
                "convergence_at": list(plan.schedule.convergence_at),
            },
            "evaluation": {
                "robustness": plan.evaluation.robustness,
                "robustness_size": plan.evaluation.size,
                "robustness_margin_mm": plan.evaluation.margin_mm,
                "context_margin_mm": plan.evaluation.context_margin_mm,
            },
        },
    )


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
) -> StudyResult:
    """Run (or continue) the study ``config`` describes and aggregate it.

    ``observe(job)`` may return a :class:`JobObserver` that follows each trained job (e.g.
    TensorBoard logging); the engine itself writes only the run folder.

    Raises:
        ConfigError: any check of :func:`~ada_core.engine.plan.build_plan`; changed or
            unfinished work in the run folder without ``force`` / ``resume``.
        DataError: the data cannot be split as configured.
        RunLockedError: another process holds the run folder.
    """
    from ada_core.engine.aggregate import aggregate

    plan = build_plan(config, registry, mode=mode, source=source)
    with RunLock(plan.run_dir):
        data = load_study_data(plan)
        jobs = plan_jobs(plan, data.replicates, data.fingerprint)
        states = inspect(plan, jobs, resume=resume, force=force,
                         reuse_standard=config.train.reuse_standard)  # fmt: skip
        set_aside(plan, states, force)
        atomic_write_text(plan.run_dir / "config.toml", plan.config_toml)
        write_json(plan.run_dir / "config.json", plan.config_json)
        write_study(plan, jobs, data)
        print(_header(plan, data), flush=True)
        for js in states:
            if js.state == "finished":
                print(f"{js.job.title}: reusing the finished job in {js.job.folder}", flush=True)
        failed = execute(plan, states, data, quiet=quiet, debug=debug, observe=observe)
        summary = aggregate(plan.run_dir)
    return StudyResult(plan.run_dir, failed, summary.text)
