"""The ADA training engine: Algorithm 1 with branches from one standard phase.

Public entry point: :func:`run_experiment` (what ``ada train`` and ``ada compare`` call).
"""

from ada_core.engine.experiment import run_experiment, standard_key
from ada_core.engine.losses import bce_loss, soft_dice_loss

__all__ = ["bce_loss", "run_experiment", "soft_dice_loss", "standard_key"]
