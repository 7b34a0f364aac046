"""Layer methods: GradCam and Guided GradCam at a layer of the model's ``attribution_layers()``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from ada_captum._guard import ReluRule
from ada_captum._targets import TargetConfig
from ada_captum.base import GradientAttributor, SharedPass, grad_cam

__all__ = ["GradCamAttributor", "GradCamConfig", "GuidedGradCamAttributor"]


class GradCamConfig(TargetConfig):
    """Target settings plus the layer and how its map is upsampled."""

    layer: str | None = Field(
        None,
        description=(
            "Key of the model's attribution_layers() to explain; None = the model's "
            "default_attribution_layer (the U-Net's 'bottleneck')."
        ),
    )
    upsample: Literal["bilinear", "nearest"] = Field(
        "bilinear", description="Interpolation of the layer-resolution map to the input size."
    )


class GradCamAttributor(GradientAttributor):
    """GradCam (Selvaraju et al. 2017): ``relu(sum_c mean_hw(dT/dA_c) * A_c)`` at the layer,
    upsampled to the input size."""

    name = "gradcam"
    Config: ClassVar[type[GradCamConfig]] = GradCamConfig
    config: GradCamConfig
    uses_layer: ClassVar[bool] = True
    uses_input_grad: ClassVar[bool] = False

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        size = tuple(shared.inputs.shape[2:])
        return grad_cam(
            shared.layer_acts[layer], shared.layer_grads[layer], size, self.config.upsample
        )


class GuidedGradCamAttributor(GradCamAttributor):
    """Guided GradCam: Guided Backprop times the upsampled GradCam map. Magnitude of the result.

    Needs ``nn.ReLU`` modules: raises ContractError on a model without any.
    """

    name = "guided_gradcam"
    rules: ClassVar[tuple[ReluRule, ...]] = ("plain", "guided")
    uses_input_grad: ClassVar[bool] = True

    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        return shared.input_grads["guided"] * super()._combine(shared, layer)
