"""Where every file of a run folder lives: the one place that spells a run-folder file name.

::

    <run>/  config.toml config.json study.json lock results.csv summary.json summary.txt
            report.html log/ada.log tensorboard/
      [<fold>/]seed-<s>/standard/          a job folder (JobPaths)
      [<fold>/]seed-<s>/branches/<label>/  a job folder
      .superseded/<time>/                  what --force kept aside (itself a run folder)

    job folder: key.json start.json metrics.jsonl last.pt last.prev.pt best.pt average.pt
                avg/epoch-<e>.pt keep.pt cycle1.pt samples.pt convergence/ada<k>.json
                done.json failed.json .lock  eval/<eval key>/{rows.csv, summary.json,
                mean_image.npy}

Paths come from these objects, never from path arithmetic: a branch asks its
:attr:`JobPaths.standard` for the phase it starts from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ada_core.errors import DataError

__all__ = ["CHECKPOINTS", "EvalPaths", "JobPaths", "ReplicatePaths", "RunLayout"]

#: The checkpoint files a job may select for scoring (``done.json``'s ``selected``).
CHECKPOINTS = ("best.pt", "last.pt", "average.pt")
_LABEL = re.compile(r"^[A-Za-z0-9_.@+-]+$")


@dataclass(frozen=True)
class EvalPaths:
    """The scored sets of one job's selected checkpoint under one evaluation key."""

    root: Path
    folder: Path

    @property
    def rows(self) -> Path:
        return self.folder / "rows.csv"

    @property
    def summary(self) -> Path:
        return self.folder / "summary.json"

    @property
    def mean_image(self) -> Path:
        return self.folder / "mean_image.npy"


@dataclass(frozen=True)
class JobPaths:
    """Every file of one job folder (a standard phase or a branch of one replicate)."""

    root: Path
    rel: Path

    @property
    def folder(self) -> Path:
        return self.root / self.rel

    @property
    def is_standard(self) -> bool:
        return self.rel.name == "standard"

    @property
    def standard(self) -> JobPaths:
        """The standard phase of this job's replicate (itself, for a standard phase)."""
        return self if self.is_standard else JobPaths(self.root, self.rel.parent.parent / "standard")

    @property
    def replicate(self) -> Path:
        """The replicate folder, relative to the run (``[<fold>/]seed-<s>``)."""
        return self.rel.parent if self.is_standard else self.rel.parent.parent

    def _f(self, name: str) -> Path:
        return self.folder / name

    key = property(lambda self: self._f("key.json"))
    start = property(lambda self: self._f("start.json"))
    metrics = property(lambda self: self._f("metrics.jsonl"))
    last = property(lambda self: self._f("last.pt"))
    last_prev = property(lambda self: self._f("last.prev.pt"))
    best = property(lambda self: self._f("best.pt"))
    average = property(lambda self: self._f("average.pt"))
    keep = property(lambda self: self._f("keep.pt"))
    cycle1 = property(lambda self: self._f("cycle1.pt"))
    samples = property(lambda self: self._f("samples.pt"))
    done = property(lambda self: self._f("done.json"))
    done_prev = property(lambda self: self._f("done.prev.json"))
    failed = property(lambda self: self._f("failed.json"))
    failed_prev = property(lambda self: self._f("failed.prev.json"))
    lock = property(lambda self: self._f(".lock"))
    convergence_dir = property(lambda self: self._f("convergence"))

    def damaged(self, path: Path) -> Path:
        """Where a damaged file of this folder is kept (``last.pt`` -> ``last.damaged.pt``)."""
        return path.with_name(f"{path.stem}.damaged{path.suffix}")

    def previous(self, path: Path) -> Path:
        """The previous version kept beside ``path`` (``last.pt`` -> ``last.prev.pt``)."""
        return path.with_name(f"{path.stem}.prev{path.suffix}")

    def avg(self, epoch: int) -> Path:
        """Weights of ``epoch`` kept for checkpoint = 'average'."""
        return self._f("avg") / f"epoch-{int(epoch)}.pt"

    def convergence(self, k: int) -> Path:
        return self.convergence_dir / f"ada{int(k)}.json"

    def convergence_files(self) -> list[tuple[int, Path]]:
        """``(k, path)`` of every convergence file present, by k."""
        found = []
        for p in self.convergence_dir.glob("ada*.json"):
            if p.stem[3:].isdigit():
                found.append((int(p.stem[3:]), p))
        return sorted(found)

    def selected(self, name: str) -> Path:
        """The checkpoint ``done.json`` names, which must be one of :data:`CHECKPOINTS`.

        Raises:
            DataError: any other name (a path elsewhere, ``../x.pt``): a job scores only its
                own checkpoints.
        """
        if name not in CHECKPOINTS:
            raise DataError(
                f"{self.done}: 'selected' is {name!r}; a job selects one of its own "
                f"checkpoints {list(CHECKPOINTS)}. The file was changed outside ADA: train "
                "the job again (--force)"
            )
        return self._f(name)

    def eval(self, eval_key: str) -> EvalPaths:
        if not re.fullmatch(r"[0-9a-f]{6,64}", eval_key):
            raise DataError(f"{self.folder}: {eval_key!r} is not an evaluation key")
        return EvalPaths(self.root, self.folder / "eval" / eval_key)


@dataclass(frozen=True)
class ReplicatePaths:
    """One (fold, seed): its standard phase and its branches."""

    root: Path
    rel: Path

    @property
    def standard(self) -> JobPaths:
        return JobPaths(self.root, self.rel / "standard")

    def branch(self, label: str) -> JobPaths:
        if not _LABEL.match(label) or label in (".", ".."):
            raise DataError(f"branch label {label!r} cannot name a folder: use letters, digits "
                            "and _ . @ + -")  # fmt: skip
        return JobPaths(self.root, self.rel / "branches" / label)


@dataclass(frozen=True)
class RunLayout:
    """The run folder ``root`` and its run-level files."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def _f(self, name: str) -> Path:
        return self.root / name

    config_toml = property(lambda self: self._f("config.toml"))
    config_json = property(lambda self: self._f("config.json"))
    study = property(lambda self: self._f("study.json"))
    lock = property(lambda self: self._f("lock"))
    results = property(lambda self: self._f("results.csv"))
    summary = property(lambda self: self._f("summary.json"))
    summary_txt = property(lambda self: self._f("summary.txt"))
    report = property(lambda self: self._f("report.html"))
    log_dir = property(lambda self: self._f("log"))
    log_file = property(lambda self: self._f("log") / "ada.log")
    tensorboard = property(lambda self: self._f("tensorboard"))
    superseded = property(lambda self: self._f(".superseded"))

    @property
    def run_files(self) -> tuple[Path, ...]:
        """The run-level files ``--force`` keeps aside with the jobs they describe."""
        return (self.config_toml, self.config_json, self.study, self.results, self.summary,
                self.summary_txt, self.report)  # fmt: skip

    def replicate(self, fold: str, seed: int) -> ReplicatePaths:
        rel = Path(fold) / f"seed-{int(seed)}" if fold else Path(f"seed-{int(seed)}")
        return ReplicatePaths(self.root, rel)

    def job(self, rel: str | Path) -> JobPaths:
        """The job folder at ``rel`` (as study.json records it), which must stay inside.

        Raises:
            DataError: ``rel`` is absolute or climbs out of the run folder.
        """
        rel = Path(rel)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise DataError(f"{self.study}: job path {str(rel)!r} leaves the run folder")
        return JobPaths(self.root, rel)

    def tensorboard_of(self, job: JobPaths) -> Path:
        """The TensorBoard log folder of one job."""
        return self.tensorboard / job.rel
