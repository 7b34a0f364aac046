"""Run summaries: the paper's tables as text and JSON."""

from ada_core.report.tables import COLUMNS, format_iou, format_summary, format_table

__all__ = ["COLUMNS", "format_iou", "format_summary", "format_table"]
