"""``metrics.jsonl``: one :class:`~ada_core.runfolder.records.EpochRecord` per line.

The engine appends a line per epoch; a resumed phase first keeps only the epochs up to its
last checkpoint (rewritten atomically, so a kill during the rewrite loses nothing). Readers get
validated records and, for a damaged line, an error that names the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from ada_core.errors import DataError
from ada_core.runfolder import _io
from ada_core.runfolder.layout import JobPaths
from ada_core.runfolder.records import EpochRecord

__all__ = ["EpochLog", "read_epochs"]


class EpochLog:
    """Appends one epoch record per line to a job's ``metrics.jsonl``.

    Args:
        job: the job folder.
        keep: the number of epochs already done (a resumed phase keeps these lines and drops
            any after them); 0 starts the file afresh.
    """

    def __init__(self, job: JobPaths, keep: int = 0) -> None:
        self.job = job
        lines: list[str] = []
        if keep and job.metrics.is_file():
            lines = [ln for ln in _io.read_text(job.metrics).splitlines() if ln.strip()][:keep]
        _io.write_text(job.metrics, job.root, "".join(line + "\n" for line in lines))

    def write(self, record: EpochRecord) -> None:
        line = json.dumps(_io.clean_json(record.model_dump(mode="json")), allow_nan=False)
        _io.append_line(self.job.metrics, self.job.root, line)


def read_epochs(path: Path, *, partial: bool = False) -> tuple[list[EpochRecord], str | None]:
    """The epoch records of ``path`` in epoch order, and the problem met reading it.

    Args:
        partial: keep the records before a damaged line (and return the problem) instead of
            raising; a reader that can do with fewer epochs (the report) sets it.

    Raises:
        DataError: the file is missing or a line is damaged (unless ``partial``).
    """
    records: list[EpochRecord] = []
    problem = None
    try:
        text = _io.read_text(path)
    except DataError as e:
        if not partial:
            raise
        return [], str(e)
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(EpochRecord.model_validate_json(line))
        except ValidationError as e:
            problem = f"{path}: line {i} is not an epoch record ({e.errors()[0]['msg']})"
            if not partial:
                raise DataError(problem + "; it was damaged outside ADA") from None
            break
    return sorted(records, key=lambda r: r.epoch), problem
