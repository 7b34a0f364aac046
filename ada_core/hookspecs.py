"""The hook specifications plugins implement (project name ``"ada"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ada_core.registry import Registry

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("ada")
hookimpl = pluggy.HookimplMarker("ada")


@hookspec
def ada_register(registry: Registry) -> None:
    """Add component classes to the registry's typed sections.

    Called once per plugin by :func:`ada_core.plugins.load_plugins`, right after the plugin's
    module is imported. Use ``registry.attributors.add(cls)``, ``registry.masks.add(cls)``,
    ``registry.datasets.add(cls)`` or ``registry.models.add(cls)``. Returns nothing; raising
    (or registering an invalid or duplicate class) marks the whole plugin as broken.
    """
