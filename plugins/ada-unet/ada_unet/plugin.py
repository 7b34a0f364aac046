"""Entry point module of the ada-unet plugin: registers ``unet-paper`` and ``smp``."""

from __future__ import annotations

from ada_core import Registry, hookimpl


@hookimpl
def ada_register(registry: Registry) -> None:
    from ada_unet.smp_model import SmpModel
    from ada_unet.unet import PaperUNet

    registry.models.add(PaperUNet)
    registry.models.add(SmpModel)
