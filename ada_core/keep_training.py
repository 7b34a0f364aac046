"""The keep-training control: the branch that goes on training without erasing anything.

It answers "is ADA better than simply training as long?" (the paper's comparison). It is an
attributor only in that it is listed among the branches: it never produces saliency
(:attr:`~ada_core.interfaces.Attributor.erases` is False), so the engine trains it on the
conventional images alone and gives it no mask builder. It registers as a built-in component,
like the ``window`` mask builder.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor

from ada_core.errors import ContractError
from ada_core.interfaces import Attributor, ComponentConfig, SegModel

__all__ = ["KeepTraining", "KeepTrainingConfig"]


class KeepTrainingConfig(ComponentConfig):
    """Parameters of the keep-training control."""

    steps: Literal["epochs", "matched"] | None = Field(
        None, description="'epochs': as many epochs as an ADA branch on the conventional data "
        "(N images per epoch, the paper's control); 'matched': the conventional data twice per "
        "epoch, as many optimiser steps as an ADA branch (2N images). None: train.control_steps."
    )


class KeepTraining(Attributor):
    """Keep training on the conventional data for as many epochs (or steps) as an ADA branch."""

    name: ClassVar[str] = "none"
    Config: ClassVar[type[ComponentConfig]] = KeepTrainingConfig
    control: ClassVar[bool] = True
    erases: ClassVar[bool] = False

    @classmethod
    def resolve_config(cls, config: ComponentConfig, train: Any) -> ComponentConfig:
        if getattr(config, "steps", None) is None:
            return config.model_copy(update={"steps": train.control_steps})
        return config

    @property
    def repeat(self) -> int:
        """2 when step-matched: the conventional data twice per epoch."""
        return 2 if self.config.steps == "matched" else 1

    def describe(self) -> str:
        if self.config.steps == "matched":
            return "step-matched longer training without ADA"
        return "longer training without ADA"

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        raise ContractError("the keep-training control erases nothing and has no saliency; "
                            "the engine never asks it for any (Attributor.erases is False)")
