"""The Python API: run a study, open a run folder, get its tables and models.

``ada_core.run(config)`` is what ``ada compare`` does (the run's log file, experiment
tracking, the report) and returns a :class:`RunResult`; ``ada_core.load_run(path)`` opens a
finished (aggregated) run folder as a :class:`Run`. See docs/api.md.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ada_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.runfolder import RunFolder, RunSummary
    from ada_core.interfaces import SegModel
    from ada_core.registry import Registry
    from ada_core.stats import Table

__all__ = ["Run", "RunResult", "load_run", "resolve_config", "run"]

log = logging.getLogger("ada_core.engine")


@dataclass
class RunResult:
    """What :func:`run` did.

    Attributes:
        run_dir: the run folder (``config.output / config.name``).
        summary: its :class:`~ada_core.runfolder.RunSummary` (None when this process did
            not aggregate: a shard, or a torchrun rank other than 0).
        failed: one message per job that failed (the others finished).
        text: the summary as text (``summary.txt``).
        report: ``report.html``, or None when not written.
        log_file: the run's log, ``<run>/log/ada.log``.
        aggregated: whether this process aggregated the study.
    """

    run_dir: Path
    summary: RunSummary | None
    failed: list[str] = field(default_factory=list)
    text: str = ""
    report: Path | None = None
    log_file: Path | None = None
    aggregated: bool = True

    @property
    def ok(self) -> bool:
        """Every job finished."""
        return not self.failed

    def load(self) -> Run:
        """The run folder as a :class:`Run` (tables and models)."""
        return load_run(self.run_dir)


def resolve_config(config: ExperimentConfig | Mapping[str, Any] | str | Path,
                   overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, str]:  # fmt: skip
    """``config`` (a model, a mapping as in the TOML file, or a TOML path) with overrides.

    Returns:
        The config and a source name for messages.

    Raises:
        ConfigError: naming the source and key.
    """
    from ada_core.config import ExperimentConfig, apply_overrides, load_config, parse_config
    from ada_core.fieldtags import active_data

    if isinstance(config, (str, Path)):
        return load_config(config, overrides), str(config)
    if isinstance(config, ExperimentConfig):
        data = active_data(config)  # a field without effect holds its default: left out
    elif isinstance(config, Mapping):
        data = json.loads(json.dumps(dict(config), default=str))  # a deep copy of plain data
    else:
        raise ConfigError(
            f"config must be an ExperimentConfig, a mapping or a TOML path, got {type(config).__name__}"
        )
    defaults = ExperimentConfig().model_dump(mode="json")
    source = "<config>" + (" (with overrides)" if overrides else "")
    return parse_config(apply_overrides(data, list(overrides), defaults), source), source


def run(
    config: ExperimentConfig | Mapping[str, Any] | str | Path,
    overrides: Sequence[str] = (),
    *,
    mode: Literal["train", "compare"] = "compare",
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    report: bool = True,
    registry: Registry | None = None,
    verbose: int = 0,
    debug: bool = False,
    source: str | None = None,
    shard: str | None = None,
) -> RunResult:
    """Run (or continue) a study and aggregate it, as ``ada compare`` / ``ada train`` do.

    Status lines of the engine become log records (logger ``ada_core.engine``), written to
    ``<run>/log/ada.log`` and wherever the caller's logging sends them; progress bars are
    drawn only on a terminal.

    Args:
        config: an :class:`~ada_core.config.ExperimentConfig`, a mapping shaped like the
            TOML file, or the path of a TOML file.
        overrides: ``KEY=VALUE`` strings, as ``--set`` takes them.
        mode: ``"compare"`` (every attributor) or ``"train"`` (the first one).
        resume: continue interrupted or failed jobs.
        force: replace results of changed settings (the old ones are kept aside).
        quiet: no progress bars.
        report: write ``report.html``.
        registry: the components; None loads the installed plugins.
        verbose: 1 adds ADA's debug records to the log file.
        debug: let errors inside jobs propagate instead of recording them as failed jobs.
        source: how messages name the config (default: its path, or ``<config>``).
        shard: ``"I/N"``: run shard I of N of the jobs and do not aggregate (job arrays; run
            ``ada aggregate RUN`` after every shard), see docs/distributed.md.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the config or overrides are invalid; a tracker is asked for but not
            installed; changed or unfinished work without ``force`` / ``resume``.
        DataError: the data cannot be loaded or split.
        RunLockedError: another process holds the run folder.
    """
    from ada_core._allocator import check_choice
    from ada_core.engine import build_plan, run_study
    from ada_core.engine.distributed import check_processes
    from ada_core.logs import LineLogger, run_log
    from ada_core.plugins import load_plugins
    from ada_core.runfolder import read_summary
    from ada_core.tracking import observer_factory

    cfg, named = resolve_config(config, overrides)
    source = source or named
    observe = observer_factory(cfg)  # before any work: a missing tracker is a config error
    registry = load_plugins() if registry is None else registry
    run_dir = Path(cfg.output) / cfg.name
    build_plan(cfg, registry, mode=mode, source=source)  # every check before the log file
    check_processes(shard, ddp=cfg.train.ddp, given=cfg.train.model_fields_set)
    check_choice()  # ADA_MALLOC, which run_study reads
    with run_log(run_dir, verbose) as log_file:
        log.info("ada %s %s", mode, source)
        # The engine reports status with print(); those lines are log records here.
        with contextlib.redirect_stdout(LineLogger(log)):
            result = run_study(cfg, registry, mode=mode, resume=resume, force=force, quiet=quiet,
                               source=source, debug=debug, observe=observe, shard=shard)  # fmt: skip
        page = None
        if report and result.aggregated:  # a shard or a torchrun rank other than 0 did not
            from ada_core.report.html import write_report

            page = write_report(result.run_dir)
            log.info("report: %s", page)
        for message in result.failed:
            log.warning("job failed: %s", message)
    summary = read_summary(result.run_dir) if result.aggregated else None
    return RunResult(result.run_dir, summary, list(result.failed), result.text, page, log_file,
                     aggregated=result.aggregated)  # fmt: skip


def _frame(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def _estimate_row(e: Any) -> dict[str, Any]:
    row = {"branch": e.branch, "set": e.set, "metric": e.metric, "mean": e.mean}
    for name in ("ci", "ci_boot"):
        iv = getattr(e, name)
        row[f"{name}_low"] = None if iv is None else iv.low
        row[f"{name}_high"] = None if iv is None else iv.high
    row.update(n_seeds=e.n_seeds, n_persons=e.n_persons, n_subjects=e.n_subjects,
               n_slices=e.n_slices,
               interval=e.interval, note=e.note)  # fmt: skip
    return row


class Run:
    """A finished (aggregated) run folder: its summary, tables, config and models.

    Tables are pandas DataFrames when pandas is installed, else lists of dicts (and
    :meth:`table` is always the statistics' own :class:`~ada_core.stats.Table`).

    Args:
        path: the run folder (holding ``summary.json``).

    Raises:
        DataError: not an aggregated run folder.
    """

    def __init__(self, path: str | Path) -> None:
        from ada_core.runfolder import open_run

        self.folder: RunFolder = open_run(path)
        self.path = self.folder.path
        self.summary: RunSummary = self.folder.summary

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, branches={self.branches}, seeds={self.summary.seeds})"

    @property
    def branches(self) -> list[str]:
        """Branch labels, the standard phase first."""
        return [b.label for b in self.summary.branches]

    @property
    def config(self) -> ExperimentConfig:
        """The resolved configuration the run was made with (``config.json``)."""
        from ada_core.config import parse_config
        from ada_core.runfolder import read_text

        path = self.folder.layout.config_json
        # written_by_ada: older runs wrote every field, those without effect too
        return parse_config(json.loads(read_text(path)), str(path), written_by_ada=True)

    @property
    def results(self) -> Any:
        """The tidy table ``results.csv``: one row per (fold, seed, branch, set, slice)."""
        path = self.folder.layout.results
        if not path.is_file():
            raise DataError(f"{self.path}: no results.csv; run `ada aggregate {self.path}`")
        try:
            import pandas as pd
        except ImportError:
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        return pd.read_csv(path)

    def table(self) -> Table:
        """``results.csv`` as the statistics' :class:`~ada_core.stats.Table` (typed columns)."""
        from ada_core.stats import read_table

        return read_table(self.folder.layout.results)

    @property
    def estimates(self) -> dict[str, Any]:
        """Per evaluation set, one row per (branch, metric): mean, intervals, n."""
        s = self.summary
        found = list(s.statistics.estimates if s.statistics else ()) + list(s.other_estimates)
        seen, by_set = set(), {}
        for e in found:
            if (e.branch, e.set, e.metric) not in seen:
                seen.add((e.branch, e.set, e.metric))
                by_set.setdefault(e.set, []).append(_estimate_row(e))
        return {name: _frame(rows) for name, rows in by_set.items()}

    @property
    def comparisons(self) -> Any:
        """Every paired comparison of a branch against a control (diff, CI, p, Holm p)."""
        s = self.summary
        rows = [c.model_dump(exclude={"ci", "ci_boot"}) | {
            "ci_low": None if c.ci is None else c.ci.low,
            "ci_high": None if c.ci is None else c.ci.high}
            for c in (s.statistics.comparisons if s.statistics else ())]  # fmt: skip
        return _frame(rows)

    def model(self, branch: str | None = None, seed: int | None = None, *,
              fold: str | None = None, device: str = "cpu") -> SegModel:  # fmt: skip
        """The network of ``branch`` (seed ``seed``) at its selected checkpoint, in eval mode."""
        from ada_core.predict import load_model

        return load_model(self.path, branch, seed, fold=fold, device=device)


def load_run(path: str | Path) -> Run:
    """Open an aggregated run folder (see :class:`Run`)."""
    return Run(path)
