"""Integrated Gradients (Sundararajan et al. 2017) as an ADA attributor, on captum."""

from __future__ import annotations

from typing import Literal

import torch
from captum.attr import IntegratedGradients
from pydantic import Field
from torch import Tensor

from ada_core import Attributor, ComponentConfig, SegModel


class IntegratedGradientsConfig(ComponentConfig):
    steps: int = Field(16, ge=2, le=512, description="Riemann steps along the path from the baseline.")
    method: Literal["gausslegendre", "riemann_trapezoid"] = Field(
        "gausslegendre", description="Integral approximation used by captum."
    )
    baseline: float = Field(0.0, description="Constant baseline image value.")


class IntegratedGradientsAttributor(Attributor):
    """|IG| of the summed predicted-foreground probability, per pixel."""

    name = "integrated_gradients"
    Config = IntegratedGradientsConfig

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        def foreground(x: Tensor) -> Tensor:
            return torch.sigmoid(model(x)).flatten(1).sum(1)

        ig = IntegratedGradients(foreground)
        attr = ig.attribute(
            images,
            baselines=self.config.baseline,
            n_steps=self.config.steps,
            method=self.config.method,
            internal_batch_size=images.shape[0] * 4,
        )
        return attr.abs()
