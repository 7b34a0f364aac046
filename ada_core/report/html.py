"""``report.html``: one self-contained page per run folder, answering the study's question.

Written at the end of ``ada compare`` and ``ada aggregate`` and again by ``ada report RUN``,
from the run folder alone (``summary.json`` and the job files it points to): the verdict and
the comparison matrix first, every set's panel and the primary set's forest plot, persons and
sites, then the tables (with CSV and LaTeX downloads), the paper's Figures 2-4,
robustness by position, what is missing, and the provenance. Figures are base64 PNG and the
downloads ``data:`` URIs, so the page needs no network, no server and no JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined

from ada_core.report._figure import ReportFigure
from ada_core.report._format import set_title
from ada_core.runfolder import RunFolder, open_run, write_text
from ada_core.report.curves import convergence_figure
from ada_core.report.forest import forest_figure
from ada_core.report.iou import iou_figure
from ada_core.report.matrix import MatrixPanel, comparison_matrix
from ada_core.report.persons import person_heatmap, persons_table
from ada_core.report.positions import position_figure
from ada_core.report.results import (
    branch_table,
    comparison_table,
    convergence_table,
    estimate_tables,
    iou_table,
)
from ada_core.report.samples import sample_figures
from ada_core.report.tables import Table

__all__ = ["Report", "build_report", "render_report", "write_report"]

_ABSENT = {
    "forest": "No comparison against a control was computed (see the verdict).",
    "convergence": "No finished job has a readable metrics.jsonl.",
    "samples": "No finished ADA branch saved samples.pt (the first training images at cycle 1).",
    "iou": "summary.json has no IoU matrix: it needs the first-cycle erased regions of at "
    "least two ADA branches in one replicate.",
    "iou-one": "an IoU between methods needs the first-cycle erased regions of at least two ADA "
    "branches; summary.json holds those of one ({names}).",
    "positions": "No scored set recorded robustness positions (robustness off, or no job scored).",
}


@dataclass
class Report:
    """Everything the page shows, before rendering.

    Attributes:
        run: the run folder (its summary, and notes on files it could not read).
        figures: key -> the figures under that heading (empty: absent, see :attr:`absent`).
        absent: key -> why a figure is not drawn.
        tables: key -> table (``estimates`` holds a list, one per set).
        matrix: the comparison matrix's panels, the primary set's first.
        config: the resolved ``config.toml``, or None.
    """

    run: RunFolder
    figures: dict[str, list[ReportFigure]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    matrix: list[MatrixPanel] = field(default_factory=list)
    config: str | None = None

    def all_figures(self) -> list[ReportFigure]:
        """Every figure, in page order."""
        return [f for fs in self.figures.values() for f in fs]


def _best_dsc(run: RunFolder) -> float | None:
    """The best validation DSC of any finished branch job (what the convergence target scales)."""
    values = [float(np.nanmax(c.dsc)) for b in run.summary.branches if b.kind != "standard"
              for j in run.done(b.label)
              if (c := run.curve(j)) is not None and np.isfinite(c.dsc).any()]  # fmt: skip
    return max(values) if values else None


def _no_comparison(s) -> str:
    """Why there is no comparison: as a plan when the study has no control, else what failed."""
    if not any(b.control for b in s.branches):
        return ("the study plans no control branch, so there is nothing to compare the methods "
                "against (add `random` or `none` to [[attributors]] for one).")
    if not any(b.kind == "ada" and not b.control for b in s.branches):
        return "the study plans no method besides its controls."
    return ("no comparison could be computed: a method or every control did not finish "
            "(see the status).")


def build_report(run_dir: Path | str) -> Report:
    """Read ``run_dir`` and draw every figure and table of its report (nothing written).

    Raises:
        DataError: ``run_dir`` is not a run folder or holds no ``summary.json`` (the message
            names the command that writes it).
    """
    run = open_run(run_dir)
    s = run.summary
    rep = Report(run=run)
    drawn = {
        "forest": [forest_figure(s)],
        "convergence": [convergence_figure(run)],
        "samples": sample_figures(run),
        "iou": [iou_figure(s)],
        "positions": [position_figure(run)],
    }
    for key, figs in drawn.items():
        rep.figures[key] = [f for f in figs if f is not None]
        if not rep.figures[key]:
            rep.absent[key] = _ABSENT[key]
    if s.iou is not None and len(s.iou.names) == 1:
        rep.absent["iou"] = _ABSENT["iou-one"].format(names=s.iou.names[0])
    rep.matrix = comparison_matrix(s)
    if not rep.matrix:
        rep.absent["matrix"] = _no_comparison(s)
    if "forest" in rep.absent:
        rep.absent["forest"] = rep.absent.get("matrix") or (
            "no method was compared with a control on the primary set.")
    rep.tables = {
        "estimates": estimate_tables(s),
        "comparisons": comparison_table(s),
        "convergence": convergence_table(s, _best_dsc(run)),
        "iou": iou_table(s),
        "branches": branch_table(s),
        "persons": persons_table(s),
        "person-heatmap": person_heatmap(s),
    }
    rep.config = run.config_text()
    return rep


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("ada_core.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["set_title"] = set_title
    return env


def _facts(rep: Report) -> dict[str, Any]:
    s = rep.run.summary
    done = sum(j.status == "done" for j in s.jobs)
    folds = [f for f in s.folds if f]
    return {
        "jobs_done": done,
        "jobs": len(s.jobs),
        "folds": folds,
        "unfinished": [b for b in s.branches if b.status != "done"],
        "report_is_val": s.report_set == "val",
        "minutes": s.seconds / 60,
    }


def render_report(rep: Report) -> str:
    """The page of ``rep`` as HTML text."""
    keys = ("persons", "person-heatmap", "comparisons", "convergence", "iou", "branches")
    rest = [rep.tables[k] for k in keys]
    tables: list[Table] = [*rep.tables["estimates"], *(t for t in rest if t is not None)]
    return _environment().get_template("report.html.j2").render(
        s=rep.run.summary, rep=rep, facts=_facts(rep), tables=tables, matrix=rep.matrix,
        figures={k: [(f, f.data_uri()) for f in fs] for k, fs in rep.figures.items()},
        notes=rep.run.notes,
    )  # fmt: skip


def write_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` from the run folder alone and return its path.

    Every figure is drawn again from the run-folder files, so the page always matches
    ``summary.json``. A study still running, or with failed branches, gives a partial page
    that says what is missing and why.

    Raises:
        DataError: ``run_dir`` is not a run folder or holds no ``summary.json``.
    """
    rep = build_report(run_dir)
    layout = rep.run.layout
    write_text(layout.report, layout.root, render_report(rep))
    return layout.report
