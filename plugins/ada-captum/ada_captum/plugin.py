"""Entry point module of the ada-captum plugin (entry-point group ``ada``, name ``captum``)."""

from __future__ import annotations

from ada_core import Registry, hookimpl


@hookimpl
def ada_register(registry: Registry) -> None:
    """Register the attributors: the paper's five, ``deconvnet`` and the ``random`` control."""
    from ada_captum import ATTRIBUTORS

    for cls in ATTRIBUTORS:
        registry.attributors.add(cls)
