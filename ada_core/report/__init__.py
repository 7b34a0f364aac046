"""The run report: ``report.html`` from a run folder's ``summary.json`` and job files.

``write_report(run_dir)`` writes the page; ``build_report(run_dir)`` returns its figures
(matplotlib ``Figure`` objects) and tables without writing anything, for notebooks and tests.
"""

from ada_core.report._figure import ReportFigure
from ada_core.report.html import Report, build_report, render_report, write_report
from ada_core.report.tables import Cell, Table

__all__ = [
    "Cell",
    "Report",
    "ReportFigure",
    "Table",
    "build_report",
    "render_report",
    "write_report",
]
