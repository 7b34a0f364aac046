"""ada-captum: saliency attributors for ADA on captum.

The paper's five methods (``vanilla``, ``guided_backprop``, ``gradcam``, ``guided_gradcam``,
``input_x_gradient``), ``deconvnet`` and the ``random`` control. Gradient attributors explain
a per-sample segmentation target (see :class:`TargetConfig`) and share forward/backward passes
when computed together (:meth:`GradientAttributor.attribute_group`, used by
``ada_core.attribution.attribute_all``).
"""

from ada_captum._targets import TargetConfig, target_scores
from ada_captum.base import GradientAttributor, grad_cam
from ada_captum.control import RandomAttributor, RandomConfig
from ada_captum.gradcam import GradCamAttributor, GradCamConfig, GuidedGradCamAttributor
from ada_captum.gradient import InputXGradientAttributor, VanillaAttributor
from ada_captum.guided import DeconvNetAttributor, GuidedBackpropAttributor

__all__ = [
    "ATTRIBUTORS",
    "DeconvNetAttributor",
    "GradCamAttributor",
    "GradCamConfig",
    "GradientAttributor",
    "GuidedBackpropAttributor",
    "GuidedGradCamAttributor",
    "InputXGradientAttributor",
    "RandomAttributor",
    "RandomConfig",
    "TargetConfig",
    "VanillaAttributor",
    "grad_cam",
    "target_scores",
]

#: Every attributor class of the plugin, in registration order.
ATTRIBUTORS = (
    VanillaAttributor,
    GuidedBackpropAttributor,
    GradCamAttributor,
    GuidedGradCamAttributor,
    InputXGradientAttributor,
    DeconvNetAttributor,
    RandomAttributor,
)
