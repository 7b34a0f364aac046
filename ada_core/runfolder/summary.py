"""``RunSummary`` (``summary.json``): the versioned contract between the engine and every reader.

``ada aggregate`` writes it; the report (``ada_core.report``), the Python API and third-party
tools read only it and the run-folder files it points to. Bump :data:`SCHEMA_VERSION` when a
field changes meaning.
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ada_core._version import __version__
from ada_core.errors import DataError
from ada_core.runfolder import _io
from ada_core.runfolder.layout import RunLayout
from ada_core.runfolder.records import EvaluationRecord, PersonRecord, ScheduleRecord, read_record
from ada_core.stats import Estimate, StudyStatistics
from ada_core.verdict import Verdict

__all__ = [
    "SCHEMA_VERSION",
    "BranchRecord",
    "ConvergenceRecord",
    "PersonScore",
    "IoUSummary",
    "JobRecord",
    "Provenance",
    "RunSummary",
    "SetRecord",
    "provenance",
    "read_summary",
    "write_summary",
]

SCHEMA_VERSION = 2
_MODEL = ConfigDict(extra="forbid", frozen=True)


class JobRecord(BaseModel):
    """One job: the standard phase or a branch of one replicate (fold x seed)."""

    model_config = _MODEL

    label: str
    seed: int
    fold: str
    path: str = Field(description="Job folder, relative to the run folder.")
    eval_key: str = Field(description="Key of its scored sets: `<path>/eval/<eval_key>/`.")
    eval_path: str = Field(description="Folder of the scored sets (rows.csv, summary.json with "
                           "the robustness-by-position grid, mean_image.npy), relative.")
    status: Literal["done", "failed", "missing"]
    error: str | None = None
    best_epoch: int | None = None
    best_cycle: int | None = None
    best_val_dsc: float | None = Field(None, description="Validation DSC of the best epoch.")
    selected: str | None = Field(None, description="The scored checkpoint file.")
    selected_epoch: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    threads: int | None = Field(None, description="torch's CPU threads of the process that "
                                "trained it (done.json).")
    counters: dict[str, int] = Field(default_factory=dict)


class BranchRecord(BaseModel):
    """A branch (or the standard phase) over all replicates."""

    model_config = _MODEL

    label: str
    method: str = Field(description="Attributor registry name, or 'standard'.")
    title: str = Field("", description="How sentences name it (e.g. 'random erasing').")
    kind: Literal["standard", "ada", "control"]
    control: bool = Field(description="A control (keep-training, or an attributor declaring "
                          "control).")
    planted: bool = Field(False, description="A planted-effect control: its method knows the "
                          "answer (e.g. the phantom's oracle); not an interpretability method.")
    status: Literal["done", "partial", "failed", "missing"]
    replicates_done: int
    replicates: int
    note: str = ""


class PersonScore(BaseModel):
    """One person's metric in one branch on the primary set: the mean over seeds of its
    person mean (its scans averaged), and the seeds' spread."""

    model_config = _MODEL

    person: str
    site: str
    fold: str
    branch: str
    set: str
    metric: str
    mean: float | None = Field(description="Mean over seeds; None when undefined in every seed.")
    sd: float | None = Field(description="SD over seeds (ddof 1); None with one seed.")
    n_seeds: int
    failing: bool = Field(False, description="Far below the other persons in every branch "
                          "(see docs/report.md).")


class SetRecord(BaseModel):
    """An evaluation set of the tidy table."""

    model_config = _MODEL

    name: str
    role: Literal["selection", "report", "robustness", "probe", "extra", "convergence"]
    description: str
    quantity: Literal["value", "change"] = Field(
        "value", description="'change': the values are differences against the same "
        "checkpoint's un-occluded metric (robustness_near), not metric values."
    )
    n_persons: int = Field(0, description="Persons (the unit of every comparison).")
    n_subjects: int = Field(0, description="Their scans (sessions, raters).")
    n_slices: int = Field(0, description="Slices per replicate and branch.")


class IoUSummary(BaseModel):
    """Mean pairwise IoU of the first-cycle erased regions (the paper's Figure 4)."""

    model_config = _MODEL

    names: list[str]
    matrix: list[list[float | None]]
    n_replicates: int
    n_images: int


class ConvergenceRecord(BaseModel):
    """Per replicate: first ADA epoch reaching the common target, and the mean validation DSC."""

    model_config = _MODEL

    label: str
    seeds: list[int] = Field(description="Seed of each entry of the lists below.")
    folds: list[str] = Field(description="Fold of each entry of the lists below.")
    epochs_to_target: list[int | None]
    mean_dsc: list[float | None]


class Provenance(BaseModel):
    model_config = _MODEL

    created: str
    ada_version: str
    versions: dict[str, str] = Field(description="Python, torch, captum, ADA's plugins.")
    platform: str
    device: str
    git_commit: str | None = None
    threads: list[int] = Field(default_factory=list, description="torch's CPU threads "
                               "(train.threads) of the processes that trained the jobs, from "
                               "their done.json; empty for runs older than this record.")


class RunSummary(BaseModel):
    """Everything a reader compares, with its n and interval, and what is missing."""

    model_config = _MODEL

    schema_version: int = SCHEMA_VERSION
    name: str
    mode: str
    complete: bool = Field(description="Every planned job finished.")
    provenance: Provenance
    seeds: list[int]
    folds: list[str]
    schedule: ScheduleRecord
    evaluation: EvaluationRecord
    slices: dict[str, dict[str, int]] = Field(description="fold -> part -> slices.")
    persons: dict[str, dict[str, list[PersonRecord]]] = Field(
        default_factory=dict, description="fold -> part (train, val, test) -> persons."
    )
    branches: list[BranchRecord]
    jobs: list[JobRecord]
    sets: list[SetRecord]
    report_set: str = Field(description="'test', or 'val' when the split holds no test part.")
    statistics: StudyStatistics | None = Field(
        description="Estimates and paired comparisons of the branches against the controls."
    )
    other_estimates: list[Estimate] = Field(
        default_factory=list,
        description="Estimates outside the comparisons: the standard phase, the other metrics "
        "and sets.",
    )
    verdict: Verdict
    iou: IoUSummary | None = None
    convergence_target: float | None = None
    convergence_fraction: float = Field(
        0.95, description="The target is this fraction of the best validation DSC any branch reached."
    )
    convergence: list[ConvergenceRecord] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list, description="What is missing, and why.")
    person_scores: list[PersonScore] = Field(
        default_factory=list, description="Every person x branch on the report set (DSC)."
    )
    seconds: float = Field(description="Training and scoring time summed over jobs.")


def read_summary(run_dir: Path | RunLayout) -> RunSummary:
    """The ``RunSummary`` of a run folder; DataError when absent or of another schema."""
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(Path(run_dir))
    if not layout.summary.is_file():
        how = (f"run `ada aggregate {layout.root}` to write it from the finished jobs"
               if layout.study.is_file() else "run `ada compare CONFIG` first")
        raise DataError(f"{layout.root}: no summary.json, so not an aggregated run folder; {how}")
    return read_record(layout.summary, RunSummary)


def write_summary(layout: RunLayout, summary: RunSummary, text: str) -> None:
    """``summary.json`` and its plain-text rendering ``summary.txt``."""
    _io.write_json(layout.summary, layout.root, summary.model_dump(mode="json"))
    _io.write_text(layout.summary_txt, layout.root, text)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str, threads: Sequence[int | None] = ()) -> Provenance:
    """Date, versions (ADA, its plugins, torch, captum, Python), platform, device, git commit,
    and the distinct thread counts the jobs were trained with (``threads``, one per job)."""
    versions = {"python": platform.python_version()}
    for dist in ("torch", "captum", "numpy", "scipy", "pydantic", "pluggy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    for ep in metadata.entry_points(group="ada"):
        if ep.dist is not None:
            versions[ep.dist.metadata["Name"]] = ep.dist.version
    return Provenance(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ada_version=__version__,
        versions=versions,
        platform=platform.platform(),
        device=device,
        git_commit=_git_commit(),
        threads=sorted({t for t in threads if t is not None}),
    )
