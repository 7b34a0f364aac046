"""Statistics of a study: estimates with intervals, paired comparisons, power.

Pure functions on the tidy results table (``results.csv``); see docs/statistics.md for what
each number means and how to recompute it with pandas and scipy.

The numerical core (:mod:`ada_core.stats._core`) works on batches of seeds x subjects
matrices, so the simulation tests run the same code that produces the numbers.
"""

from __future__ import annotations

from ada_core.stats._core import (
    Crossed,
    bootstrap_means,
    cohen_dz,
    crossed,
    design_se,
    holm,
    mde,
    seeds_needed,
    t_interval,
    t_test,
)
from ada_core.stats._models import Comparison, Estimate, Interval, StudyStatistics
from ada_core.stats._study import study_statistics
from ada_core.stats._table import (
    HIGHER_IS_BETTER,
    KEY,
    KEY_COLUMNS,
    SubjectMeans,
    Table,
    read_table,
    subject_means,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "KEY",
    "KEY_COLUMNS",
    "Comparison",
    "Crossed",
    "Estimate",
    "Interval",
    "StudyStatistics",
    "SubjectMeans",
    "Table",
    "bootstrap_means",
    "cohen_dz",
    "crossed",
    "design_se",
    "holm",
    "mde",
    "read_table",
    "seeds_needed",
    "study_statistics",
    "subject_means",
    "t_interval",
    "t_test",
]
