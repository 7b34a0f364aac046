"""``RunSummary``: the versioned contract between the engine and everything that reads a run.

``ada aggregate`` writes it to ``summary.json``; the report (``ada_core.report``), the Python
API and third-party tools read only it and the run-folder files it points to. Bump
:data:`SCHEMA_VERSION` when a field changes meaning.
"""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ada_core.stats import Estimate, StudyStatistics

__all__ = [
    "SCHEMA_VERSION",
    "BranchRecord",
    "ConvergenceRecord",
    "IoUSummary",
    "JobRecord",
    "Provenance",
    "RunSummary",
    "SetRecord",
    "provenance",
    "read_summary",
]

SCHEMA_VERSION = 1
_MODEL = ConfigDict(extra="forbid", frozen=True)


class JobRecord(BaseModel):
    """One job: the standard phase or a branch of one replicate (fold x seed)."""

    model_config = _MODEL

    label: str
    seed: int
    fold: str
    path: str = Field(description="Job folder, relative to the run folder.")
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
    counters: dict[str, int] = Field(default_factory=dict)


class BranchRecord(BaseModel):
    """A branch (or the standard phase) over all replicates."""

    model_config = _MODEL

    label: str
    method: str = Field(description="Attributor registry name, 'none' or 'standard'.")
    kind: Literal["standard", "ada", "control"]
    control: bool = Field(description="A control (`none`, or an attributor declaring control).")
    status: Literal["done", "partial", "failed", "missing"]
    replicates_done: int
    replicates: int
    note: str = ""


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
    n_subjects: int = 0
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
    schedule: dict[str, Any]
    evaluation: dict[str, Any]
    slices: dict[str, dict[str, int]] = Field(description="fold -> part -> slices.")
    branches: list[BranchRecord]
    jobs: list[JobRecord]
    sets: list[SetRecord]
    report_set: str = Field(description="'test', or 'val' when the split holds no test part.")
    statistics: StudyStatistics | None = Field(
        description="Estimates and paired comparisons of the branches against the controls."
    )
    other_estimates: list[Estimate] = Field(
        default_factory=list,
        description="Estimates outside the comparisons: the standard phase and secondary metrics.",
    )
    verdict: list[str]
    iou: IoUSummary | None = None
    convergence_target: float | None = None
    convergence_fraction: float = Field(
        0.95, description="The target is this fraction of the best validation DSC any branch reached."
    )
    convergence: list[ConvergenceRecord] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list, description="What is missing, and why.")
    seconds: float = Field(description="Training and scoring time summed over jobs.")


def read_summary(run_dir: Path) -> RunSummary:
    """The ``RunSummary`` of a run folder; DataError when absent or of another schema."""
    from ada_core.errors import DataError

    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise DataError(
            f"{run_dir}: no summary.json, so not an aggregated run folder; run `ada compare` "
            "or `ada aggregate RUN` first"
        )
    try:
        return RunSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: not a RunSummary of schema {SCHEMA_VERSION}: {e}") from None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str) -> Provenance:
    """Date, versions (ADA, its plugins, torch, captum, Python), platform, device, git commit."""
    import ada_core

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
        ada_version=ada_core.__version__,
        versions=versions,
        platform=platform.platform(),
        device=device,
        git_commit=_git_commit(),
    )
