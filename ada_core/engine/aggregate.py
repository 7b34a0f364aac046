"""``ada aggregate RUN``: study-level results from the finished jobs of a run folder.

Reads ``study.json`` and each job folder (nothing else: jobs may have run in other processes
or on other machines), concatenates the jobs' tidy rows into ``results.csv``, computes the
statistics (:mod:`ada_core.stats`) and the verdict (:mod:`ada_core.verdict`), the IoU of the
first-cycle erased regions and the convergence numbers, and writes ``summary.json`` (a
:class:`~ada_core.engine.summary.RunSummary`) and ``summary.txt``. A study still running, or
with failed jobs, gives a partial summary that says what is missing and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ada_core.engine.checkpoint import atomic_write_text, load_checkpoint, read_json, write_json
from ada_core.engine.evaluation import COLUMNS
from ada_core.engine.runlog import MetricsLog
from ada_core.engine.summary import (
    BranchRecord,
    ConvergenceRecord,
    IoUSummary,
    JobRecord,
    RunSummary,
    SetRecord,
    provenance,
)
from ada_core.engine.text import format_summary
from ada_core.errors import DataError
from ada_core.masks import erased_iou_matrix
from ada_core.stats import read_table, study_statistics
from ada_core.verdict import verdict

__all__ = ["AggregateResult", "aggregate", "convergence"]

#: Metrics compared between branches (the Holm family); the others are estimated only.
COMPARED = ("dsc", "hsd")
SECONDARY = ("tpr", "tnr", "ppv", "hd95")
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


def _curve(path: Path) -> list[float]:
    rows = sorted(MetricsLog.read(path), key=lambda r: r["epoch"])
    return [math.nan if r["metrics"].get("dsc_mean") is None else float(r["metrics"]["dsc_mean"])
            for r in rows]  # fmt: skip


def _job_record(run_dir: Path, job: dict[str, Any]) -> JobRecord:
    folder = run_dir / job["path"]
    base = {"label": job["label"], "seed": job["seed"], "fold": job["fold"], "path": job["path"],
            "eval_path": f"{job['path']}/eval/{job['eval_key']}"}
    key = read_json(folder / "key.json").get("key") if (folder / "key.json").is_file() else None
    if key != job["key"]:
        return JobRecord(**base, status="missing", error="not started")
    rows = folder / "eval" / job["eval_key"] / "rows.csv"
    if (folder / "failed.json").is_file():
        return JobRecord(**base, status="failed", error=read_json(folder / "failed.json")["error"])
    if not (folder / "done.json").is_file():
        return JobRecord(**base, status="missing", error="still training or interrupted")
    done = read_json(folder / "done.json")
    best = done["best"]
    rec = {
        **base,
        "best_epoch": best["epoch"],
        "best_cycle": best["cycle"],
        "best_val_dsc": best["metrics"].get("dsc_mean"),
        "selected": done["selected"],
        "selected_epoch": done["selected_epoch"],
        "epochs": done["epochs"],
        "seconds": done["seconds"],
        "counters": done.get("counters", {}),
    }
    if not rows.is_file():
        return JobRecord(**rec, status="missing", error="trained, not yet scored")
    return JobRecord(**rec, status="done")


def _iou(run_dir: Path, jobs: list[JobRecord], ada: list[str]) -> IoUSummary | None:
    done = {(j.fold, j.seed, j.label): j for j in jobs if j.status == "done"}
    reps = sorted({(j.fold, j.seed) for j in jobs})
    mats, n_images = [], 0
    for fold, seed in reps:
        labels = [b for b in ada if (fold, seed, b) in done]
        if len(labels) != len(ada) or not ada:
            continue
        keeps = {b: load_checkpoint(run_dir / done[(fold, seed, b)].path / "cycle1.pt")["keep"].float()
                 for b in labels}  # fmt: skip
        _, m = erased_iou_matrix(keeps)
        mats.append(m.double())
        n_images += int(next(iter(keeps.values())).shape[0])
    if not mats:
        return None
    mean = torch.stack(mats).mean(0)
    matrix = [[None if math.isnan(v) else float(v) for v in row] for row in mean.tolist()]
    return IoUSummary(names=ada, matrix=matrix, n_replicates=len(mats), n_images=n_images)


def _concat_rows(run_dir: Path, study: dict[str, Any], jobs: list[JobRecord]) -> Path:
    keys = {(j["fold"], j["seed"], j["label"]): j["eval_key"] for j in study["jobs"]}
    out = [",".join(COLUMNS)]
    for j in jobs:
        if j.status != "done":
            continue
        path = run_dir / j.path / "eval" / keys[(j.fold, j.seed, j.label)] / "rows.csv"
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0] != out[0]:
            raise DataError(f"{path}: unexpected header {lines[:1]}; expected {out[0]}")
        out += lines[1:]
    path = run_dir / "results.csv"
    atomic_write_text(path, "\n".join(out) + "\n")
    return path


def _sets(table: Any) -> list[SetRecord]:
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
                                 n_subjects=len(set(sub["subject"])), n_slices=len(sub["subject"]) // reps))  # fmt: skip
    order = {"val": 0, "test": 1, "robustness": 2, "robustness_near": 3, "context": 4}
    return sorted(records, key=lambda r: (order.get(r.name, 5 if r.role == "extra" else 6), r.name))


def aggregate(run_dir: Path, *, n_boot: int = 2000) -> AggregateResult:
    """Write results.csv, summary.json and summary.txt of ``run_dir``; return the summary.

    Raises:
        DataError: ``run_dir`` holds no ``study.json`` (not a run folder).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "study.json").is_file():
        raise DataError(f"{run_dir}: no study.json, so not an ADA run folder; run `ada compare` first")
    study = read_json(run_dir / "study.json")
    jobs = [_job_record(run_dir, j) for j in study["jobs"]]
    branches, missing = [], []
    info = [{"label": "standard", "method": "standard", "kind": "standard", "control": False},
            *study["branches"]]  # fmt: skip
    for b in info:
        mine = [j for j in jobs if j.label == b["label"]]
        ok = sum(j.status == "done" for j in mine)
        failed = [j for j in mine if j.status == "failed"]
        status = "done" if ok == len(mine) else "failed" if failed and ok == 0 else "missing" if ok == 0 else "partial"
        note = "; ".join(f"{j.fold + '/' if j.fold else ''}seed {j.seed}: {j.status} ({j.error})"
                         for j in mine if j.status != "done")  # fmt: skip
        if note:
            missing.append(f"{b['label']}: {note}")
        branches.append(BranchRecord(label=b["label"], method=b["method"], kind=b["kind"],
                                     control=b["control"], status=status, replicates_done=ok,
                                     replicates=len(mine), note=note))  # fmt: skip
    rows_path = _concat_rows(run_dir, study, jobs)
    done = [b for b in branches if b.status == "done"]
    table = read_table(rows_path) if any(j.status == "done" for j in jobs) else None
    sets = _sets(table)
    report_set = "test" if any(s.name == "test" for s in sets) else "val"
    compared_sets = [s.name for s in sets if s.role != "selection" or report_set == "val"]
    methods = [b.label for b in done if b.kind == "ada" and not b.control]
    controls = [b.label for b in done if b.control]
    stats, others, sentences = None, [], []
    if table is not None and done:
        if methods and controls:
            stats = study_statistics(table, branches=methods, controls=controls,
                                     sets=compared_sets, metrics=COMPARED, n_boot=n_boot)  # fmt: skip
            sentences = verdict(stats, metric="dsc", lead=True,
                                missing=[b.label for b in branches if b.status != "done"])
        plain = [s.name for s in sets if not s.name.startswith("val@")]
        compared = set(methods + controls) if stats is not None else set()
        # The compared branches' DSC and HSD estimates are in `stats`; estimate the rest only.
        for labels, metrics in (([b.label for b in done], SECONDARY),
                                ([b.label for b in done if b.label not in compared], COMPARED)):
            if labels:
                others += study_statistics(table, branches=labels, controls=(), sets=plain,
                                           metrics=metrics, n_boot=min(n_boot, 500)).estimates  # fmt: skip
    if not sentences:
        why = ("no interpretability-method branch finished" if not methods else
               "no control (random or none) finished") if done else "no job has finished yet"  # fmt: skip
        sentences = [f"No comparison against the controls: {why}."]
    ada = [b["label"] for b in study["branches"] if b["kind"] == "ada"]
    curves: dict[str, list[tuple[int, str, list[float]]]] = {}
    for b in study["branches"]:
        curves[b["label"]] = [(j.seed, j.fold, _curve(run_dir / j.path / "metrics.jsonl"))
                              for j in jobs if j.label == b["label"] and j.status == "done"]  # fmt: skip
    target, conv = convergence({k: v for k, v in curves.items() if v}) if any(curves.values()) else (None, [])
    summary = RunSummary(
        name=study["name"],
        mode=study["mode"],
        complete=all(j.status == "done" for j in jobs),
        provenance=provenance(study["device"]),
        seeds=study["seeds"],
        folds=study["folds"],
        schedule=study["schedule"],
        evaluation=study["evaluation"],
        slices=study["slices"],
        branches=branches,
        jobs=jobs,
        sets=sets,
        report_set=report_set,
        statistics=stats,
        other_estimates=others,
        verdict=sentences,
        iou=_iou(run_dir, jobs, ada),
        convergence_target=None if target is None or math.isnan(target) else target,
        convergence=conv,
        missing=missing,
        seconds=sum(j.seconds or 0.0 for j in jobs),
    )
    write_json(run_dir / "summary.json", summary.model_dump(mode="json"))
    text = format_summary(summary)
    atomic_write_text(run_dir / "summary.txt", text)
    return AggregateResult(summary, text)
