"""Names, units, number formatting and set order shared by the report's tables and figures."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ada_core.quantities import METRICS as _ALL
from ada_core.quantities import PAPER_METRICS

if TYPE_CHECKING:
    from ada_core.runfolder import RunSummary
    from ada_core.stats import Comparison

__all__ = [
    "CHANGE_SETS",
    "METRICS",
    "MINUS",
    "fmt",
    "fmt_ci",
    "fmt_p",
    "holm_significant",
    "metric_header",
    "ordered_sets",
    "set_title",
    "unit",
]

MINUS = "\u2212"
#: The paper's table columns, in order.
METRICS: tuple[str, ...] = PAPER_METRICS
#: Sets whose rows are changes against the un-occluded metric, not the metric itself.
CHANGE_SETS = frozenset({"robustness_near"})


def unit(metric: str) -> str:
    """Unit of a difference in ``metric``: 'points' (percentage points) or 'mm'."""
    return _ALL[metric].diff_unit if metric in _ALL else ""


def metric_header(metric: str, set_name: str = "") -> str:
    """Column header, e.g. 'DSC (%)', or 'ΔDSC (points)' on a set of changes."""
    if metric not in _ALL:
        return metric.upper()
    return _ALL[metric].header(change=set_name in CHANGE_SETS)


def set_title(name: str) -> str:
    """A set's name as a reader sees it: 'val@ada2' -> 'val@ada2 (after 2 ADA epochs)'."""
    m = re.fullmatch(r"(.+)@ada(\d+)", name)
    return f"{name} (after {m[2]} ADA epoch{'s' if m[2] != '1' else ''})" if m else name


def fmt(x: float | None, digits: int = 2, *, signed: bool = False) -> str:
    """A number with a true minus sign; 'n/a' for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    if float(s) == 0:
        s = f"{0:.{digits}f}"
    return s.replace("-", MINUS)


def fmt_ci(low: float, high: float, digits: int = 2) -> str:
    """'[low, high]' with true minus signs."""
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def fmt_p(p: float | None) -> str:
    """A p value: '< 0.001', two decimals from 0.1, else two significant digits."""
    if p is None or math.isnan(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def holm_significant(c: Comparison) -> bool:
    """Holm-corrected p below the level of the comparison's family."""
    return c.significant


def ordered_sets(summary: RunSummary, names: Sequence[str]) -> list[str]:
    """``names`` with the report set first, then in the order of ``summary.sets``."""
    order = [summary.report_set] + [s.name for s in summary.sets]
    rank = {n: i for i, n in reversed(list(enumerate(order)))}
    return sorted(dict.fromkeys(names), key=lambda n: (rank.get(n, len(order)), n))
