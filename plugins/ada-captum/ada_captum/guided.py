"""Modified-ReLU methods: Guided Backprop and DeconvNet (backward hooks on nn.ReLU modules)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ada_captum._guard import ReluRule
from ada_captum.base import GradientAttributor, SharedPass

__all__ = ["DeconvNetAttributor", "GuidedBackpropAttributor"]


class GuidedBackpropAttributor(GradientAttributor):
    """Guided Backprop (Springenberg et al. 2015): at every ``nn.ReLU`` only positive
    gradients pass, and only where the activation was positive. Magnitude of the result.

    Needs ``nn.ReLU`` modules: raises ContractError on a model without any.
    """

    name = "guided_backprop"
    rules: ClassVar[tuple[ReluRule, ...]] = ("guided",)

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        return shared.input_grads["guided"]


class DeconvNetAttributor(GradientAttributor):
    """DeconvNet (Zeiler and Fergus 2014): at every ``nn.ReLU`` the positive part of the
    gradient passes, whatever the forward activation was. Magnitude of the result.

    Needs ``nn.ReLU`` modules: raises ContractError on a model without any.
    """

    name = "deconvnet"
    rules: ClassVar[tuple[ReluRule, ...]] = ("deconv",)

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        return shared.input_grads["deconv"]
