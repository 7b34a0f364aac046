"""The run folder: its layout, a typed record for every file in it, and the only writers and
readers of those files.

The engine writes through this package; aggregate, the report, the Python API, ``ada
predict`` and tracking read through it. A newcomer finds every file of a run folder here:

- :mod:`~ada_core.runfolder.layout`: where each file lives (:class:`RunLayout`,
  :class:`JobPaths`, :class:`EvalPaths`); the only place a file name is spelled.
- :mod:`~ada_core.runfolder.records`: the JSON files (study.json, key.json, start.json,
  done.json, failed.json, eval summary, convergence files) as pydantic records.
- :mod:`~ada_core.runfolder.epochs`: ``metrics.jsonl``; :mod:`~ada_core.runfolder.rows`:
  ``rows.csv`` and ``results.csv``; :mod:`~ada_core.runfolder.checkpoints`: the torch files;
  :mod:`~ada_core.runfolder.summary`: ``summary.json`` (:class:`RunSummary`).
- :mod:`~ada_core.runfolder.lock`: the run and job locks; :mod:`~ada_core.runfolder.superseded`:
  what ``--force`` keeps aside; :mod:`~ada_core.runfolder.reader`: :class:`RunFolder`.
- :mod:`~ada_core.runfolder._io`: atomic writes that never follow a link or leave the run.
"""

from ada_core.runfolder._io import (
    RefusedFileError,
    StorageError,
    open_no_follow,
    read_text,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from ada_core.runfolder.checkpoints import (
    CheckpointWarning,
    Samples,
    TrainingState,
    Weights,
    read_cycle1,
    read_keep,
    read_samples,
    read_training_state,
    read_weights,
    write_cycle1,
    write_keep,
    write_samples,
    write_training_state,
    write_weights,
)
from ada_core.runfolder.epochs import EpochLog, read_epochs
from ada_core.runfolder.layout import CHECKPOINTS, EvalPaths, JobPaths, ReplicatePaths, RunLayout
from ada_core.runfolder.lock import RunLock, RunLockedError, job_lock
from ada_core.runfolder.reader import Curve, RunFolder, open_run
from ada_core.runfolder.records import (
    RUN_FORMAT,
    AnalysisRecord,
    BestRecord,
    ConvergenceFile,
    DoneRecord,
    EpochRecord,
    EvalSummary,
    EvaluationRecord,
    FailedRecord,
    KeyRecord,
    PersonRecord,
    Positions,
    ScheduleRecord,
    StartRecord,
    StudyBranch,
    StudyJob,
    StudyRecord,
    read_record,
    write_record,
)
from ada_core.runfolder.rows import COLUMNS, RowBlock, RowsDigest, check_rows, concat_results, write_rows
from ada_core.runfolder.summary import (
    SCHEMA_VERSION,
    BranchRecord,
    ConvergenceRecord,
    IoUSummary,
    JobRecord,
    Provenance,
    RunSummary,
    SetRecord,
    provenance,
    read_summary,
    write_summary,
)
from ada_core.runfolder.superseded import keep_aside, move_aside, new_stamp

__all__ = [
    "CHECKPOINTS",
    "COLUMNS",
    "RUN_FORMAT",
    "SCHEMA_VERSION",
    "AnalysisRecord",
    "BestRecord",
    "BranchRecord",
    "CheckpointWarning",
    "ConvergenceFile",
    "ConvergenceRecord",
    "Curve",
    "DoneRecord",
    "EpochLog",
    "EpochRecord",
    "EvalPaths",
    "EvalSummary",
    "EvaluationRecord",
    "FailedRecord",
    "IoUSummary",
    "JobPaths",
    "JobRecord",
    "KeyRecord",
    "PersonRecord",
    "Positions",
    "Provenance",
    "RefusedFileError",
    "ReplicatePaths",
    "RowBlock",
    "RowsDigest",
    "RunFolder",
    "RunLayout",
    "RunLock",
    "RunLockedError",
    "RunSummary",
    "Samples",
    "ScheduleRecord",
    "SetRecord",
    "StartRecord",
    "StorageError",
    "StudyBranch",
    "StudyJob",
    "StudyRecord",
    "TrainingState",
    "Weights",
    "check_rows",
    "concat_results",
    "job_lock",
    "keep_aside",
    "move_aside",
    "new_stamp",
    "open_no_follow",
    "open_run",
    "provenance",
    "read_cycle1",
    "read_epochs",
    "read_keep",
    "read_record",
    "read_samples",
    "read_summary",
    "read_text",
    "read_training_state",
    "remove_stale_temporaries",
    "read_weights",
    "write_cycle1",
    "write_json",
    "write_keep",
    "write_record",
    "write_rows",
    "write_samples",
    "write_summary",
    "write_text",
    "write_training_state",
    "write_weights",
]
