"""The run folder as the report reads it: ``summary.json`` and the job files it points to.

Only jobs whose status is ``done`` are read, so a study still running or with failed jobs
gives the same figures as a finished one, for fewer replicates. A job file that is missing
or unreadable does not stop the report: it is left out and :attr:`RunFolder.notes` names it
and says what was left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ada_core.engine.summary import JobRecord, RunSummary, read_summary
from ada_core.errors import DataError

__all__ = ["Curve", "RunFolder", "load_run"]


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

    path: Path
    summary: RunSummary
    notes: list[str] = field(default_factory=list)
    _curves: dict[str, Curve | None] = field(default_factory=dict, repr=False)

    def note(self, text: str) -> None:
        """Record a problem with a file once (shown in the report's status section)."""
        if text not in self.notes:
            self.notes.append(text)

    def done(self, label: str | None = None) -> list[JobRecord]:
        """Finished jobs (of ``label``), in fold then seed order."""
        jobs = [j for j in self.summary.jobs if j.status == "done"]
        jobs = [j for j in jobs if label is None or j.label == label]
        return sorted(jobs, key=lambda j: (j.fold, j.seed))

    def config_text(self) -> str | None:
        """The resolved ``config.toml``, or None (with a note) when absent."""
        path = self.path / "config.toml"
        if not path.is_file():
            self.note(f"{path}: missing, so the resolved configuration is not shown")
            return None
        return path.read_text(encoding="utf-8")

    def curve(self, job: JobRecord) -> Curve | None:
        """The job's validation curve (read once), or None (with a note) when unreadable."""
        if job.path not in self._curves:
            self._curves[job.path] = self._read_curve(job)
        return self._curves[job.path]

    def _read_curve(self, job: JobRecord) -> Curve | None:
        path = self.path / job.path / "metrics.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            self.note(f"{path}: unreadable ({e}); its curve is left out of Figure 2")
            return None
        rows = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                self.note(f"{path}: line {i} is not JSON ({e}); lines from it on are "
                                  "left out of Figure 2")  # fmt: skip
                break
        rows.sort(key=lambda r: r.get("epoch", 0))
        if not rows:
            self.note(f"{path}: no epochs; its curve is left out of Figure 2")
            return None
        dsc = [r.get("metrics", {}).get("dsc_mean") for r in rows]
        return Curve(
            job=job,
            epoch=np.asarray([int(r["epoch"]) for r in rows]),
            cycle=np.asarray([int(r.get("cycle", 0)) for r in rows]),
            dsc=np.asarray([math.nan if v is None else float(v) for v in dsc]),
        )

    def samples(self, job: JobRecord) -> dict[str, Any] | None:
        """The job's ``samples.pt`` as numpy arrays, or None when it has none."""
        path = self.path / job.path / "samples.pt"
        if not path.is_file():
            return None
        import torch

        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a corrupt file is reported, not fatal
            self.note(f"{path}: unreadable ({type(e).__name__}: {e}); Figure 3 "
                              f"leaves out {job.label}")  # fmt: skip
            return None
        need = ("images", "masks", "saliency", "keep", "ada_images")
        if not isinstance(raw, dict) or any(k not in raw for k in need):
            have = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            self.note(f"{path}: expected the keys {list(need)}, found {have}; Figure 3 "
                              f"leaves out {job.label}")  # fmt: skip
            return None
        out = {k: raw[k].detach().float().numpy()[:, 0] for k in need}
        out["fill"] = float(raw.get("fill", 0.0))
        return out

    def evaluation(self, job: JobRecord) -> dict[str, Any] | None:
        """The job's scored-sets ``summary.json`` (positions, spacing_mm), or None."""
        path = self.path / job.eval_path / "summary.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            self.note(f"{path}: unreadable ({e}); the robustness map leaves out "
                              f"{job.label} seed {job.seed}")  # fmt: skip
            return None

    def mean_image(self, job: JobRecord) -> np.ndarray | None:
        """``(H, W)`` mean image of the job's reported part, or None."""
        path = self.path / job.eval_path / "mean_image.npy"
        try:
            image = np.load(path)
        except (OSError, ValueError) as e:
            self.note(f"{path}: unreadable ({e}); the robustness map is drawn "
                              "without the mean image")  # fmt: skip
            return None
        return image if image.ndim == 2 else None


def load_run(run_dir: Path | str) -> RunFolder:
    """The run folder ``run_dir`` with its validated ``summary.json``.

    Raises:
        DataError: ``run_dir`` is not a folder, holds no ``summary.json`` or one of another
            schema; the message names the folder and the command that writes it.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such run folder. Pass the folder `ada compare CONFIG` "
                        "printed after 'run folder:'")  # fmt: skip
    if not (path / "summary.json").is_file():
        if (path / "study.json").is_file():
            how = f"run `ada aggregate {path}` to write it from the finished jobs"
        else:
            how = "run `ada compare CONFIG` to run a study, then `ada report` on its run folder"
        raise DataError(f"{path}: no summary.json, so there is nothing to report; {how}")
    return RunFolder(path=path, summary=read_summary(path))
