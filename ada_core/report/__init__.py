"""Run summaries: the paper's tables, convergence and IoU as text, JSON and figures."""

from ada_core.report.curves import convergence, format_convergence, read_curve, save_convergence_plot
from ada_core.report.tables import COLUMNS, format_iou, format_summary, format_table

__all__ = [
    "COLUMNS",
    "convergence",
    "format_convergence",
    "format_iou",
    "format_summary",
    "format_table",
    "read_curve",
    "save_convergence_plot",
]
