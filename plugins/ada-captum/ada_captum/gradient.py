"""Plain-gradient methods: Vanilla Backprop and InputXGradient (from the plain backward pass)."""

from __future__ import annotations

from torch import Tensor

from ada_captum.base import GradientAttributor, SharedPass

__all__ = ["InputXGradientAttributor", "VanillaAttributor"]


class VanillaAttributor(GradientAttributor):
    """Vanilla Backprop (Simonyan et al. 2014): ``|d target / d input|``."""

    name = "vanilla"

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        return shared.input_grads["plain"]


class InputXGradientAttributor(GradientAttributor):
    """InputXGradient (Shrikumar et al. 2016): ``|input * d target / d input|``.

    Zero-valued pixels (e.g. an already erased region, or background after normalisation
    to zero) get zero saliency whatever their gradient.
    """

    name = "input_x_gradient"

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        return shared.inputs * shared.input_grads["plain"]
