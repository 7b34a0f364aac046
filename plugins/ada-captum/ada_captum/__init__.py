"""ada-captum: saliency attributors for ADA.

The paper's five methods (``vanilla``, ``guided_backprop``, ``gradcam``, ``guided_gradcam``,
``input_x_gradient``), ``deconvnet`` and the ``random`` control. Gradient attributors explain
a per-sample segmentation target (see :class:`TargetConfig`) and are all computed by one
shared pass (:func:`shared_pass`: one forward, one backward per ReLU rule), alone or in a
group (``Attributor.attribute_group``, used by ``ada_core.attribution.attribute_all``). The
plugin is named after captum, the reference its tests compare every method against.
"""

from ada_captum._targets import TargetConfig, target_scores
from ada_captum.base import GradientAttributor, grad_cam, shared_pass
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
    "shared_pass",
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
