"""A finished run folder as its readers see it: the summary and, lazily, the job files.

:class:`RunFolder` is what the report, the Python API, ``ada predict`` and tracking open. Only
jobs whose status is ``done`` are read, so a study still running or with failed jobs reads the
same as a finished one, for fewer replicates. A job file that is missing or damaged does not
stop a reader that can do without it: it is left out and :attr:`RunFolder.notes` says what and
why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ada_core.errors import DataError
from ada_core.runfolder import _io
from ada_core.runfolder.checkpoints import read_samples
from ada_core.runfolder.epochs import read_epochs
from ada_core.runfolder.layout import JobPaths, RunLayout
from ada_core.runfolder.records import DoneRecord, EvalSummary, StudyRecord, read_record
from ada_core.runfolder.summary import JobRecord, RunSummary, read_summary

__all__ = ["Curve", "RunFolder", "open_run"]


@dataclass(frozen=True)
class Curve:
    """Validation DSC per epoch of one job (``metrics.jsonl``).

    Attributes:
        job: the job it belongs to.
        epoch: ``(E,)`` epoch numbers, from 1 (ADA epochs count across cycles).
        cycle: ``(E,)`` ADA cycle of each epoch (0 in the standard phase).
        dsc: ``(E,)`` validation DSC %, NaN where undefined.
    """

    job: JobRecord
    epoch: np.ndarray
    cycle: np.ndarray
    dsc: np.ndarray


@dataclass
class RunFolder:
    """A run folder's summary, with lazy, fault-tolerant access to its job files."""

    layout: RunLayout
    summary: RunSummary
    notes: list[str] = field(default_factory=list)
    _curves: dict[str, Curve | None] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.layout.root

    def note(self, text: str) -> None:
        """Record a problem with a file once (readers show these)."""
        if text not in self.notes:
            self.notes.append(text)

    def paths(self, job: JobRecord) -> JobPaths:
        return self.layout.job(job.path)

    def done(self, label: str | None = None) -> list[JobRecord]:
        """Finished jobs (of ``label``), in fold then seed order."""
        jobs = [j for j in self.summary.jobs if j.status == "done"]
        jobs = [j for j in jobs if label is None or j.label == label]
        return sorted(jobs, key=lambda j: (j.fold, j.seed))

    def study(self) -> StudyRecord:
        """``study.json``.

        Raises:
            DataError: missing or damaged.
        """
        return read_record(self.layout.study, StudyRecord)

    def config_text(self) -> str | None:
        """The resolved ``config.toml``, or None (with a note) when absent."""
        try:
            return _io.read_text(self.layout.config_toml)
        except DataError as e:
            self.note(f"{e}, so the resolved configuration is not shown")
            return None

    def done_record(self, job: JobRecord) -> DoneRecord:
        """The job's ``done.json``.

        Raises:
            DataError: the job has not finished, or its file is damaged.
        """
        paths = self.paths(job)
        if job.status != "done" or not paths.done.is_file():
            raise DataError(f"{self.path}: {job.label} (seed {job.seed}"
                            f"{', fold ' + job.fold if job.fold else ''}) has not finished "
                            f"({job.status}: {job.error}); finish it with `ada compare "
                            "--resume`, or choose another branch or seed")  # fmt: skip
        return read_record(paths.done, DoneRecord)

    def selected_checkpoint(self, job: JobRecord) -> Path:
        """The checkpoint file the job selected (always inside its own folder)."""
        return self.paths(job).selected(self.done_record(job).selected)

    def curve(self, job: JobRecord) -> Curve | None:
        """The job's validation curve (read once), or None (with a note) when unreadable."""
        if job.path not in self._curves:
            self._curves[job.path] = self._read_curve(job)
        return self._curves[job.path]

    def _read_curve(self, job: JobRecord) -> Curve | None:
        path = self.paths(job).metrics
        rows, problem = read_epochs(path, partial=True)
        if problem:
            self.note(f"{problem}; " + ("epochs from it on are" if rows else "its curve is")
                      + " left out of Figure 2")
        if not rows:
            if not problem:
                self.note(f"{path}: no epochs; its curve is left out of Figure 2")
            return None
        dsc = [r.metrics.get("dsc_mean") for r in rows]
        return Curve(job=job, epoch=np.asarray([r.epoch for r in rows]),
                     cycle=np.asarray([r.cycle for r in rows]),
                     dsc=np.asarray([math.nan if v is None else float(v) for v in dsc]))  # fmt: skip

    def samples(self, job: JobRecord) -> dict[str, Any] | None:
        """The job's ``samples.pt`` as ``(n, H, W)`` numpy arrays, or None when it has none."""
        path = self.paths(job).samples
        if not path.is_file():
            return None
        try:
            s = read_samples(path)
        except DataError as e:
            self.note(f"{e}; Figure 3 leaves out {job.label}")
            return None
        out = {k: getattr(s, k).detach().float().numpy()[:, 0] for k in s._TENSORS}
        out["fill"] = s.fill
        return out

    def evaluation(self, job: JobRecord) -> EvalSummary | None:
        """The job's scored-sets summary (positions, spacing), or None with a note."""
        path = self.paths(job).eval(job.eval_key).summary
        try:
            return read_record(path, EvalSummary)
        except DataError as e:
            self.note(f"{e}; the robustness map leaves out {job.label} seed {job.seed}")
            return None

    def mean_image(self, job: JobRecord) -> np.ndarray | None:
        """``(H, W)`` mean image of the job's reported part, or None."""
        path = self.paths(job).eval(job.eval_key).mean_image
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            self.note(f"{path}: unreadable ({e}); the robustness map is drawn without the "
                      "mean image")  # fmt: skip
            return None
        return image if image.ndim == 2 else None


def open_run(run_dir: Path | str) -> RunFolder:
    """The aggregated run folder ``run_dir``.

    Raises:
        DataError: ``run_dir`` is not a folder, holds no ``summary.json`` or one of another
            schema; the message names the folder and the command that writes it.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such run folder. Pass the folder `ada compare CONFIG` "
                        "printed after 'run folder:'")  # fmt: skip
    layout = RunLayout(path)
    return RunFolder(layout, read_summary(layout))
