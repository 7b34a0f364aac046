"""The ADA training engine: a study of seeds x branches from one run plan.

Public entry points: :func:`run_study` (what ``ada train`` and ``ada compare`` call),
:func:`aggregate` (``ada aggregate``) and :func:`build_plan` (``ada config validate``). What
the engine writes, and every reader reads, is defined in :mod:`ada_core.runfolder`.
"""

from ada_core.engine.aggregate import aggregate
from ada_core.engine.losses import bce_loss, soft_dice_loss
from ada_core.engine.plan import RunPlan, build_plan, resolve_device
from ada_core.engine.study import StudyResult, run_study

__all__ = [
    "RunPlan",
    "StudyResult",
    "aggregate",
    "bce_loss",
    "build_plan",
    "resolve_device",
    "run_study",
    "soft_dice_loss",
]
