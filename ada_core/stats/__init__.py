"""Statistics of a study: estimates with intervals, paired comparisons, the omnibus test, power.

Pure functions on the tidy results table (``results.csv``); see docs/statistics.md for what
each number means, how it was checked by simulation and how to recompute it with pandas and
scipy.

The numerical core (:mod:`ada_core.stats._core`, :mod:`ada_core.stats._omnibus`) works on
batches of seeds x persons matrices, so the calibration simulations run the code that
produces the numbers.
"""

from __future__ import annotations

from ada_core.stats._compare import bounded_interval
from ada_core.stats._core import (
    Design,
    bootstrap_means,
    cohen_dz,
    design,
    holm,
    mde,
    needed,
    power,
    t_interval,
    t_test,
)
from ada_core.stats._models import (
    Comparison,
    Estimate,
    Interval,
    Omnibus,
    PrimaryEndpoint,
    StudyStatistics,
)
from ada_core.stats._omnibus import MethodEffect, method_effect
from ada_core.stats._study import study_statistics
from ada_core.stats._table import (
    HIGHER_IS_BETTER,
    KEY,
    KEY_COLUMNS,
    PersonMeans,
    SubjectMeans,
    Table,
    person_means,
    read_table,
    subject_means,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "KEY",
    "KEY_COLUMNS",
    "Comparison",
    "Design",
    "Estimate",
    "Interval",
    "MethodEffect",
    "Omnibus",
    "PersonMeans",
    "PrimaryEndpoint",
    "StudyStatistics",
    "SubjectMeans",
    "Table",
    "bootstrap_means",
    "bounded_interval",
    "cohen_dz",
    "design",
    "holm",
    "mde",
    "method_effect",
    "needed",
    "person_means",
    "power",
    "read_table",
    "study_statistics",
    "subject_means",
    "t_interval",
    "t_test",
]
