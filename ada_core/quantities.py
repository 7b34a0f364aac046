"""What each measured quantity is: the one table of metrics and of the results table's columns.

A metric's name, unit, direction and bounds live here and nowhere else (torchmetrics'
``higher_is_better`` on the metric class): the scoring, the statistics, the verdict, the
tables and the figures read them from :data:`METRICS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ada_core.errors import InputError, suggest

__all__ = ["COMPARED_METRICS", "KEY_COLUMNS", "METRICS", "PAPER_METRICS", "ROW_KEY", "Metric", "metric", "metric_names"]


@dataclass(frozen=True)
class Metric:
    """One per-slice metric of the results table.

    Attributes:
        name: column name in results.csv (``"dsc"``).
        label: how a reader sees it (``"DSC"``).
        unit: unit of a value (``"%"``, ``"mm"``).
        diff_unit: unit of a difference of two values (``"points"``, ``"mm"``).
        higher_is_better: orientation.
        low, high: bounds of a value (None: unbounded); intervals of bounded metrics are kept
            inside them.
        description: one sentence.
        paper: a column of the paper's tables (DSC, HSD, TPR, TNR, PPV).
    """

    name: str
    label: str
    unit: str
    diff_unit: str
    higher_is_better: bool
    low: float | None
    high: float | None
    description: str
    paper: bool = True

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    def header(self, change: bool = False) -> str:
        """Column header: 'DSC (%)', or 'ΔDSC (points)' for a set of changes."""
        if change:
            return f"\u0394{self.label} ({self.diff_unit})"
        return f"{self.label} ({self.unit})"


def _pct(name: str, label: str, description: str) -> Metric:
    return Metric(name, label, "%", "points", True, 0.0, 100.0, description)


def _mm(name: str, label: str, description: str) -> Metric:
    return Metric(name, label, "mm", "mm", False, 0.0, None, description)


#: Every metric of results.csv, in column order.
METRICS: dict[str, Metric] = {m.name: m for m in (
    _pct("dsc", "DSC", "Dice similarity coefficient, 200 tp / (2 tp + fp + fn)."),
    _mm("hsd", "HSD", "Hausdorff surface distance: the larger directed maximum boundary "
        "distance (medpy hd)."),
    Metric("hd95", "HD95", "mm", "mm", False, 0.0, None, "95th percentile of both directed "
           "boundary distances pooled together (medpy hd95).", paper=False),
    _pct("tpr", "TPR", "True positive rate (sensitivity), 100 tp / (tp + fn)."),
    _pct("tnr", "TNR", "True negative rate (specificity), 100 tn / (tn + fp)."),
    _pct("ppv", "PPV", "Positive predictive value (precision), 100 tp / (tp + fp)."),
    Metric("hd95_monai", "HD95 (MONAI)", "mm", "mm", False, 0.0, None, "The larger of the two "
           "directed 95th percentiles (MONAI compute_hausdorff_distance, percentile=95).",
           paper=False),
    Metric("fail", "Failures", "%", "points", False, 0.0, 100.0, "100 on a slice with grey "
           "matter where the prediction is empty (a failed segmentation), else 0; a person's "
           "mean is its failure rate.", paper=False),
)}  # fmt: skip

#: The paper's table columns, in order.
PAPER_METRICS = tuple(name for name, m in METRICS.items() if m.paper)
#: Metrics the statistics compare between branches (the secondary family), with the primary.
COMPARED_METRICS = ("dsc", "hsd", "fail")

#: The columns every results table has before its metrics, in file order.
KEY_COLUMNS = ("seed", "fold", "branch", "set", "person", "subject", "site", "slice")
#: The columns that identify a row (person and site are attributes of the subject).
ROW_KEY = ("seed", "fold", "branch", "set", "subject", "slice")


def metric_names() -> tuple[str, ...]:
    return tuple(METRICS)


def metric(name: str) -> Metric:
    """The :class:`Metric` called ``name``.

    Raises:
        InputError: an unknown name (the valid ones are listed).
    """
    try:
        return METRICS[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r}. " + suggest(name, METRICS)) from None

#: DSC (points) below which a person counts as failed in a branch, whatever the others score
#: (``ada_core.engine.persons``: a person failing in every branch is named in the verdict).
FAILING_FLOOR = 20.0
