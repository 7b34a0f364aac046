"""The ADA training engine: a study of seeds x branches from one run plan.

Public entry points: :func:`run_study` (what ``ada train`` and ``ada compare`` call),
:func:`aggregate` (``ada aggregate``), :func:`build_plan` (``ada config validate``) and
:class:`RunSummary` (what every reader of a run folder gets).
"""

from ada_core.engine.aggregate import aggregate
from ada_core.engine.losses import bce_loss, soft_dice_loss
from ada_core.engine.plan import RunPlan, build_plan, resolve_device
from ada_core.engine.study import StudyResult, run_study
from ada_core.engine.summary import RunSummary, read_summary

__all__ = [
    "RunPlan",
    "RunSummary",
    "StudyResult",
    "aggregate",
    "bce_loss",
    "build_plan",
    "read_summary",
    "resolve_device",
    "run_study",
    "soft_dice_loss",
]
