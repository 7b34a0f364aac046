"""ada-unet: the paper's U-Net (``unet-paper``) and segmentation-models-pytorch models (``smp``).

Components are registered through the ``ada`` entry point (:mod:`ada_unet.plugin`); build
them with ``ada_core.plugins.load_plugins().models.build(name, params)``.
"""

from ada_unet._guided import GuidedReport, count_relu_calls, make_relus_distinct
from ada_unet.smp_model import SmpModel, SmpModelConfig, smp_architectures, smp_encoders
from ada_unet.unet import PaperUNet, PaperUNetConfig

__all__ = [
    "GuidedReport",
    "PaperUNet",
    "PaperUNetConfig",
    "SmpModel",
    "SmpModelConfig",
    "count_relu_calls",
    "make_relus_distinct",
    "smp_architectures",
    "smp_encoders",
]
