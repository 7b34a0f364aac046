"""ada-seg's built-in components, registered through the same hook as any plugin."""

from __future__ import annotations

from ada_core.hookspecs import hookimpl
from ada_core.registry import Registry


@hookimpl
def ada_register(registry: Registry) -> None:
    from ada_core.keep_training import KeepTraining
    from ada_core.masks import WindowMaskBuilder

    registry.masks.add(WindowMaskBuilder)
    registry.attributors.add(KeepTraining)
