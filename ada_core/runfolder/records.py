"""One pydantic record per JSON file a run writes, and the one reader and writer of each.

A record is validated when read: a damaged or hand-edited file gives a :class:`DataError`
naming the file and the field, never a ``KeyError`` somewhere downstream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ada_core.errors import DataError
from ada_core.runfolder import _io
from ada_core.runfolder.layout import CHECKPOINTS

__all__ = [
    "RUN_FORMAT",
    "AnalysisRecord",
    "BestRecord",
    "ConvergenceFile",
    "DoneRecord",
    "EpochRecord",
    "EvalSummary",
    "EvaluationRecord",
    "FailedRecord",
    "KeyRecord",
    "PersonRecord",
    "Positions",
    "Record",
    "ScheduleRecord",
    "StartRecord",
    "StudyBranch",
    "StudyJob",
    "StudyRecord",
    "read_record",
    "write_record",
]

#: Version of the run folder's file formats; it enters every job key, so a folder written in
#: another format is reported as changed instead of being misread.
RUN_FORMAT = 2

_R = TypeVar("_R", bound="Record")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _problem(e: ValidationError) -> str:
    errs = e.errors()
    first = errs[0]
    where = ".".join(str(p) for p in first["loc"]) or "(the whole file)"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def read_record(path: Path, model: type[_R]) -> _R:
    """``path`` parsed and validated as ``model``.

    Raises:
        DataError: missing, not JSON, or not a valid record, naming the file and the field.
    """
    text = _io.read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); it was damaged outside ADA") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise DataError(f"{path} is not a valid {model.__name__}: {_problem(e)}; it was "
                        "damaged or written by another version of ADA") from None  # fmt: skip


def write_record(path: Path, root: Path, record: Record) -> None:
    """``record`` as strict JSON, atomically (see :mod:`ada_core.runfolder._io`)."""
    _io.write_json(path, root, record.model_dump(mode="json", by_alias=True))


# ----------------------------------------------------------------------------- job files


class KeyRecord(Record):
    """``key.json``: a job's key and the settings it hashes (shown when they change)."""

    key: str
    settings: dict[str, Any]


class StartRecord(Record):
    """``start.json``: digests of the state a branch really started from."""

    source: str = Field(alias="from", description="The checkpoint it started from.")
    model: str
    optimizer: str
    rng: str


class BestRecord(Record):
    epoch: int
    cycle: int
    metrics: dict[str, float | None]


class DoneRecord(Record):
    """``done.json``: a finished job: where it ended and which checkpoint it scores."""

    status: Literal["done"] = "done"
    key: str
    epochs: int
    best: BestRecord
    selected: Literal[CHECKPOINTS]  # type: ignore[valid-type]
    selected_epoch: int | None
    seconds: float
    counters: dict[str, int] = Field(default_factory=dict)
    threads: int | None = Field(None, description="torch.get_num_threads() of the process that "
                                "trained it, at the end (train.threads); None: written before "
                                "ADA recorded it.")


class FailedRecord(Record):
    """``failed.json``: a job that stopped, and why."""

    status: Literal["failed"] = "failed"
    key: str
    error: str
    where: str
    cycle: int | None = None
    epoch: int | None = None
    time: str
    traceback: str = ""


class EpochRecord(Record):
    """One line of ``metrics.jsonl``: an epoch of a phase."""

    phase: Literal["standard", "ada", "control"]
    branch: str | None
    seed: int
    cycle: int
    epoch: int
    loss: float | None
    metrics: dict[str, float | None]
    seconds: float
    images_per_s: float | None
    train_images: int
    counters: dict[str, int] = Field(default_factory=dict)


class ConvergenceFile(Record):
    """``convergence/ada<k>.json``: per-slice validation metrics after ADA epoch k."""

    epoch: int
    person: list[str]
    subject: list[str]
    site: list[str]
    slice: list[int]
    values: dict[str, list[float | None]]


class Positions(Record):
    """Robustness by position of the occluding square (Algorithm 2's grid)."""

    size: int
    grid: tuple[int, int]
    dsc: list[list[float | None]]
    dsc_change: list[list[float | None]]
    near_squares_per_slice: float


class EvalSummary(Record):
    """``eval/<key>/summary.json``: the scored sets of a job's selected checkpoint."""

    sets: dict[str, dict[str, float | None]]
    rows: int = Field(description="Rows written to rows.csv.")
    rows_sha256: str = Field(description="sha256 of rows.csv as written.")
    report_part: Literal["test", "val"]
    spacing_mm: tuple[float, float]
    positions: Positions | None = None


# ----------------------------------------------------------------------------- study.json


class StudyBranch(Record):
    label: str
    method: str = Field(description="The attributor's registry name.")
    title: str = Field(description="How sentences name it, e.g. 'random erasing'.")
    control: bool
    kind: Literal["ada", "control"]
    settings: dict[str, Any]


class StudyJob(Record):
    label: str
    seed: int
    fold: str
    path: str
    key: str
    eval_key: str


class PersonRecord(Record):
    """One person of one part of a fold."""

    person: str
    sites: list[str]
    subjects: list[str] = Field(description="Its scans (sessions, raters) in this part.")
    slices: int


class ScheduleRecord(Record):
    standard_epochs: int
    cycles: int
    ada_epochs: int
    checkpoint: Literal["best", "last", "average"]
    average_last: int
    convergence_at: list[int]


class EvaluationRecord(Record):
    robustness: bool
    robustness_size: int
    robustness_margin_mm: float
    context_margin_mm: float | None


class AnalysisRecord(Record):
    """The analysis the study declared (``[study]``), resolved against its plan."""

    primary_set: str | None = Field(description="None: the study has no control to test against.")
    primary_metric: str
    primary_controls: list[str]
    alpha: float
    resolve: float
    planted: list[str] = Field(default_factory=list, description="Branches whose method knows "
                               "the answer (a planted-effect control, not a method).")


class StudyRecord(Record):
    """``study.json``: what ``ada aggregate`` needs to read the run folder alone."""

    schema_version: Literal[2] = 2
    name: str
    mode: Literal["train", "compare"]
    device: str
    seeds: list[int]
    folds: list[str]
    branches: list[StudyBranch]
    jobs: list[StudyJob]
    slices: dict[str, dict[str, int]] = Field(description="fold -> part -> slices.")
    persons: dict[str, dict[str, list[PersonRecord]]] = Field(
        description="fold -> part (train, val, test) -> persons."
    )
    extra_sets: list[str]
    schedule: ScheduleRecord
    evaluation: EvaluationRecord
    analysis: AnalysisRecord
    settings: dict[str, Any] = Field(
        description="Every setting that changes a result (standard, branch and eval keys): "
        "processes of one study (shards) must agree on them."
    )
