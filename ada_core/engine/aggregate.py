"""``ada aggregate RUN``: study-level results from the finished jobs of a run folder.

Reads ``study.json`` and each job folder through :mod:`ada_core.runfolder` (nothing else: jobs
may have run in other processes or on other machines), checks every job's rows whole and only
then writes ``results.csv`` (a damaged rows file leaves the old ``results.csv`` as it was and
names itself), computes the statistics (:mod:`ada_core.stats`) and the verdict
(:mod:`ada_core.verdict`), the IoU of the first-cycle erased regions and the convergence
numbers, and writes ``summary.json`` (a :class:`~ada_core.runfolder.RunSummary`) and
``summary.txt``. A study still running, or with failed jobs, gives a partial summary that says
what is missing and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ada_core.engine.text import format_summary
from ada_core.errors import DataError
from ada_core.masks import erased_iou_matrix
from ada_core.quantities import COMPARED_METRICS
from ada_core.runfolder import (
    BranchRecord,
    ConvergenceRecord,
    DoneRecord,
    EvalSummary,
    FailedRecord,
    IoUSummary,
    JobRecord,
    KeyRecord,
    RowsDigest,
    RunLayout,
    RunSummary,
    SetRecord,
    StudyJob,
    StudyRecord,
    check_rows,
    concat_results,
    provenance,
    read_cycle1,
    read_epochs,
    read_record,
    write_summary,
)
from ada_core.engine.persons import failing, person_scores
from ada_core.stats import PrimaryEndpoint, StudyStatistics, read_table, study_statistics
from ada_core.verdict import Verdict, verdict

__all__ = ["AggregateResult", "aggregate", "convergence", "reanalyse"]

#: Metrics compared between branches (the secondary family); every metric is estimated.
COMPARED = COMPARED_METRICS
_DESCRIPTIONS = {
    "val": "validation part: selected the checkpoint (its numbers are biased upwards)",
    "test": "held-out test part (never used for selection)",
    "robustness": "Algorithm 2: every Z x Z square zeroed in turn; mean over the copies",
    "robustness_near": "change against the un-occluded metric, over the squares that touch "
    "the neighbourhood of the ground truth",
    "context": "context probe: everything farther than the margin from the ground truth removed",
}


@dataclass
class AggregateResult:
    summary: RunSummary
    text: str


def convergence(
    curves: dict[str, list[tuple[int, str, list[float]]]], fraction: float = 0.95
) -> tuple[float, list[ConvergenceRecord]]:
    """Epochs to a common DSC target and the mean DSC of every branch's curves.

    Args:
        curves: label -> ``(seed, fold, validation DSC per ADA epoch)`` per replicate.
        fraction: the target is ``fraction`` x the best DSC any branch reached.
    """
    finite = [v for cs in curves.values() for _, _, c in cs for v in c if not math.isnan(v)]
    target = fraction * max(finite) if finite else math.nan
    records = []
    for label, cs in curves.items():
        hits, means = [], []
        for _, _, c in cs:
            hits.append(next((i for i, v in enumerate(c, start=1) if v >= target), None))
            vals = [v for v in c if not math.isnan(v)]
            means.append(sum(vals) / len(vals) if vals else None)
        records.append(ConvergenceRecord(label=label, seeds=[s for s, _, _ in cs],
                                         folds=[f for _, f, _ in cs], epochs_to_target=hits,
                                         mean_dsc=means))  # fmt: skip
    return target, records


def _job_record(layout: RunLayout, job: StudyJob) -> tuple[JobRecord, str | None]:
    """The job's record and, when done, its checked rows (raises on damaged rows)."""
    p = layout.job(job.path)
    base = {"label": job.label, "seed": job.seed, "fold": job.fold, "path": job.path,
            "eval_key": job.eval_key, "eval_path": str(p.eval(job.eval_key).folder.relative_to(
                layout.root))}  # fmt: skip
    key = read_record(p.key, KeyRecord).key if p.key.is_file() else None
    if key != job.key:
        return JobRecord(**base, status="missing", error="not started"), None
    if p.failed.is_file():
        return JobRecord(**base, status="failed", error=read_record(p.failed, FailedRecord).error), None
    if not p.done.is_file():
        return JobRecord(**base, status="missing", error="still training or interrupted"), None
    done = read_record(p.done, DoneRecord)
    rec = {**base, "best_epoch": done.best.epoch, "best_cycle": done.best.cycle,
           "best_val_dsc": done.best.metrics.get("dsc_mean"), "selected": done.selected,
           "selected_epoch": done.selected_epoch, "epochs": done.epochs,
           "seconds": done.seconds, "counters": done.counters, "threads": done.threads}  # fmt: skip
    ev = p.eval(job.eval_key)
    if not ev.summary.is_file():
        return JobRecord(**rec, status="missing", error="trained, not yet scored"), None
    scored = read_record(ev.summary, EvalSummary)
    try:
        rows = check_rows(ev, RowsDigest(scored.rows, scored.rows_sha256), seed=job.seed,
                          fold=job.fold, branch=job.label)  # fmt: skip
    except DataError as e:
        raise DataError(f"{e}. {layout.results} was left as it was. Score the job again with "
                        "`ada compare CONFIG --resume` (the damaged scores are kept aside)") from None  # fmt: skip
    return JobRecord(**rec, status="done"), rows


def _iou(layout: RunLayout, jobs: list[JobRecord], ada: list[str]) -> IoUSummary | None:
    done = {(j.fold, j.seed, j.label): j for j in jobs if j.status == "done"}
    reps = sorted({(j.fold, j.seed) for j in jobs})
    mats, n_images = [], 0
    for fold, seed in reps:
        labels = [b for b in ada if (fold, seed, b) in done]
        if len(labels) != len(ada) or not ada:
            continue
        keeps = {b: read_cycle1(layout.job(done[(fold, seed, b)].path)) for b in labels}
        _, m = erased_iou_matrix(keeps)
        mats.append(m.double())
        n_images += int(next(iter(keeps.values())).shape[0])
    if not mats:
        return None
    mean = torch.stack(mats).mean(0)
    matrix = [[None if math.isnan(v) else float(v) for v in row] for row in mean.tolist()]
    return IoUSummary(names=ada, matrix=matrix, n_replicates=len(mats), n_images=n_images)


def _sets(table) -> list[SetRecord]:  # noqa: ANN001 - a stats Table or None
    present = table.values("set") if table is not None else []
    records = []
    for name in present:
        if name in _DESCRIPTIONS:
            role = {"val": "selection", "test": "report", "context": "probe"}.get(name, "robustness")
            desc = _DESCRIPTIONS[name]
        elif name.startswith("val@ada"):
            role, desc = "convergence", f"validation after ADA epoch {name[7:]} (convergence)"
        else:
            role, desc = "extra", "extra evaluation set ([[evaluate]])"
        sub = table.subset(table["set"] == name)
        reps = max(1, len({(f, s, b) for f, s, b in zip(sub["fold"], sub["seed"], sub["branch"], strict=True)}))
        records.append(SetRecord(name=name, role=role, description=desc,
                                 quantity="change" if name == "robustness_near" else "value",
                                 n_persons=len(set(zip(sub["fold"], sub["person"], strict=True))),
                                 n_subjects=len(set(sub["subject"])), n_slices=len(sub["subject"]) // reps))  # fmt: skip
    order = {"val": 0, "test": 1, "robustness": 2, "robustness_near": 3, "context": 4}
    return sorted(records, key=lambda r: (order.get(r.name, 5 if r.role == "extra" else 6), r.name))


def _branches(study: StudyRecord, jobs: list[JobRecord]) -> tuple[list[BranchRecord], list[str]]:
    branches, missing = [], []
    info = [("standard", "standard", "the standard phase", "standard", False)]
    info += [(b.label, b.method, b.title, b.kind, b.control) for b in study.branches]
    for label, method, title, kind, control in info:
        mine = [j for j in jobs if j.label == label]
        ok = sum(j.status == "done" for j in mine)
        failed = [j for j in mine if j.status == "failed"]
        status = "done" if ok == len(mine) else "failed" if failed and ok == 0 else \
            "missing" if ok == 0 else "partial"
        note = "; ".join(f"{j.fold + '/' if j.fold else ''}seed {j.seed}: {j.status} ({j.error})"
                         for j in mine if j.status != "done")  # fmt: skip
        if note:
            missing.append(f"{label}: {note}")
        branches.append(BranchRecord(label=label, method=method, title=title, kind=kind,
                                     control=control, planted=label in study.analysis.planted,
                                     status=status, replicates_done=ok,
                                     replicates=len(mine), note=note))  # fmt: skip
    return branches, missing


def _primary(study: StudyRecord, sets: list[SetRecord], branches: list[BranchRecord],
             compared: list[str]) -> tuple[PrimaryEndpoint | None, str]:  # fmt: skip
    """The declared primary endpoint, if the finished branches and scored sets can answer it."""
    a = study.analysis
    done = {b.label for b in branches if b.status == "done"}
    if a.primary_set is None:
        return None, "the study plans no control branch to test the methods against"
    if a.primary_set not in {s.name for s in sets}:
        return None, f"its set {a.primary_set!r} has not been scored yet"
    controls = [c for c in a.primary_controls if c in done]
    if not controls:
        return None, f"its control(s) {a.primary_controls} have not finished"
    if a.primary_set not in compared:
        compared.append(a.primary_set)
    return PrimaryEndpoint(set=a.primary_set, metric=a.primary_metric, controls=tuple(controls)), ""


def _statistics(table, study: StudyRecord, sets: list[SetRecord], branches: list[BranchRecord],
                n_boot: int):  # noqa: ANN001, ANN202
    done = [b for b in branches if b.status == "done"]
    report_set = "test" if any(s.name == "test" for s in sets) else "val"
    compared_sets = [s.name for s in sets if s.role not in ("selection", "convergence")
                     or report_set == "val" and s.role == "selection"]  # fmt: skip
    methods = [b.label for b in done if b.kind == "ada" and not b.control]
    controls = [b.label for b in done if b.control]
    titles = {b.label: b.title for b in branches}
    changes = [s.name for s in sets if s.quantity == "change"]
    stats, others = None, []
    why = ("no job has finished yet" if not done else
           "no interpretability-method branch finished" if not methods else
           "the study plans no control branch" if not any(b.control for b in branches) else
           "no control branch finished" if not controls else "")  # fmt: skip
    if table is not None and methods and controls:
        primary, why = _primary(study, sets, branches, compared_sets)
        metrics = list(dict.fromkeys([*COMPARED, study.analysis.primary_metric]))
        stats = study_statistics(table, branches=methods, controls=controls, sets=compared_sets,
                                 changes=changes,
                                 metrics=metrics, primary=primary, n_boot=n_boot,
                                 alpha=study.analysis.alpha,
                                 resolve={study.analysis.primary_metric: study.analysis.resolve,
                                          "*": study.analysis.resolve})  # fmt: skip
    scores, fails = [], []
    if table is not None and done:
        scores, fails = failing(person_scores(table, report_set))
        have = {(e.branch, e.set, e.metric) for e in (stats.estimates if stats else ())}
        labels = [b.label for b in done]
        for set_ in (s.name for s in sets):  # every set estimated, convergence sets too
            on_set = set(table["branch"][table["set"] == set_].tolist())
            todo = [b for b in labels if b in on_set
                    and any((b, set_, m) not in have for m in table.metrics)]
            metrics = [m for m in table.metrics if any((b, set_, m) not in have for b in todo)]
            if todo:
                found = study_statistics(table, branches=todo, sets=[set_], changes=changes,
                                         metrics=metrics,
                                         n_boot=min(n_boot, 500)).estimates  # fmt: skip
                others += [e for e in found if (e.branch, e.set, e.metric) not in have]
    missing = [b.label for b in branches if b.status != "done"]
    if stats is not None:
        said = verdict(stats, titles=titles, missing=missing, planted=study.analysis.planted,
                       notes=fails, no_primary=why)  # fmt: skip
    else:
        said = Verdict(opening=[f"No comparison of methods against controls: {why}."],
                       caveats=([f"Not compared (missing or failed): {', '.join(missing)}."]
                                if missing and done else []) + fails)  # fmt: skip
    return report_set, stats, others, said, scores


def aggregate(run_dir: Path, *, n_boot: int = 2000) -> AggregateResult:
    """Write results.csv, summary.json and summary.txt of ``run_dir``; return the summary.

    Raises:
        DataError: ``run_dir`` holds no ``study.json`` (not a run folder), or a file it needs
            is damaged (named, with what to do; nothing is replaced then).
    """
    layout = RunLayout(Path(run_dir))
    if not layout.study.is_file():
        raise DataError(f"{layout.root}: no study.json, so not an ADA run folder; run `ada "
                        "compare` first")  # fmt: skip
    study = read_record(layout.study, StudyRecord)
    found = [_job_record(layout, j) for j in study.jobs]  # every rows file checked first
    jobs = [j for j, _ in found]
    branches, missing = _branches(study, jobs)
    rows_path = concat_results(layout, [rows for _, rows in found if rows is not None])
    table = read_table(rows_path) if any(j.status == "done" for j in jobs) else None
    sets = _sets(table)
    report_set, stats, others, sentences, scores = _statistics(table, study, sets, branches,
                                                               n_boot)  # fmt: skip
    ada = [b.label for b in study.branches if b.kind == "ada"]
    curves: dict[str, list[tuple[int, str, list[float]]]] = {}
    for b in study.branches:
        curves[b.label] = []
        for j in jobs:
            if j.label == b.label and j.status == "done":
                epochs, _ = read_epochs(layout.job(j.path).metrics)
                dsc = [r.metrics.get("dsc_mean") for r in epochs]
                curves[b.label].append((j.seed, j.fold, [math.nan if v is None else v for v in dsc]))
    target, conv = convergence({k: v for k, v in curves.items() if v}) if any(curves.values()) else (None, [])
    summary = RunSummary(
        name=study.name, mode=study.mode, complete=all(j.status == "done" for j in jobs),
        provenance=provenance(study.device, [j.threads for j in jobs]), seeds=study.seeds,
        folds=study.folds,
        schedule=study.schedule, evaluation=study.evaluation, slices=study.slices,
        persons=study.persons, branches=branches, jobs=jobs, sets=sets, report_set=report_set,
        statistics=stats, other_estimates=others, verdict=sentences,
        iou=_iou(layout, jobs, ada),
        convergence_target=None if target is None or math.isnan(target) else target,
        convergence=conv, missing=missing, seconds=sum(j.seconds or 0.0 for j in jobs),
        person_scores=scores,
    )  # fmt: skip
    text = format_summary(summary)
    write_summary(layout, summary, text)
    return AggregateResult(summary, text)


def reanalyse(run_dir: Path, seeds: Sequence[int], *, n_boot: int = 2000) -> tuple[StudyStatistics | None, Verdict]:
    """The statistics and verdict the study would give had it run only ``seeds``; writes nothing.

    A job is one seed (and fold) of one branch, and its rows do not depend on which other seeds
    the study lists, so this is what ``ada compare`` prints for a config listing ``seeds``
    (bench/bench_positive_control.py uses it to score many seed sets from one run). It reads
    the run's last ``results.csv``: run ``ada aggregate`` first if jobs finished since.

    Raises:
        DataError: not a run folder, no results.csv yet, or a seed the run does not hold.
    """
    layout = RunLayout(Path(run_dir))
    if not layout.study.is_file() or not layout.results.is_file():
        raise DataError(f"{layout.root}: no study.json or results.csv; run `ada compare` first")
    study = read_record(layout.study, StudyRecord)
    wanted = [int(s) for s in seeds]
    unknown = sorted(set(wanted) - set(study.seeds))
    if unknown or len(set(wanted)) != len(wanted):
        raise DataError(f"{layout.root}: seeds {wanted} are not distinct seeds of the run "
                        f"(it holds {study.seeds})")  # fmt: skip
    kept = [j for j in study.jobs if j.seed in wanted]
    jobs = [_job_record(layout, j)[0] for j in kept]
    branches, _ = _branches(study, jobs)
    table = read_table(layout.results)
    table = table.subset(np.isin(table["seed"], wanted))
    sets = _sets(table)
    _, stats, _, said, _ = _statistics(table, study, sets, branches, n_boot)
    return stats, said
