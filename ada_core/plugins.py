"""Plugin discovery: entry-point group ``ada``, one registrar hook, explicit loading.

Nothing is loaded at import: call :func:`load_plugins`. ada-core's own built-ins are a plugin
module registered through the same hook.
"""

from __future__ import annotations

import os
from importlib import metadata
from types import ModuleType

import pluggy

from ada_core import builtins, hookspecs
from ada_core.errors import AdaError, PluginError
from ada_core.registry import PluginInfo, Registry

__all__ = ["ENTRY_POINT_GROUP", "load_plugins", "disabled_plugins"]

ENTRY_POINT_GROUP = "ada"
DISABLE_ENV = "ADA_DISABLE_PLUGINS"


def disabled_plugins() -> set[str]:
    """Plugin (entry point) names listed in ``ADA_DISABLE_PLUGINS`` (comma separated)."""
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _plugin_info(ep: metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist
    if dist is None:
        return PluginInfo(ep.name, "(unknown distribution)", "")
    return PluginInfo(ep.name, dist.metadata["Name"], dist.version)


def _register(pm: pluggy.PluginManager, registry: Registry, module: object, info: PluginInfo) -> None:
    pm.register(module, name=info.name)
    registry._set_current(info)
    try:
        for impl in pm.hook.ada_register.get_hookimpls():
            if impl.plugin_name == info.name:
                impl.function(registry=registry)
    except Exception as e:
        registry._remove_plugin(info.name)
        pm.unregister(name=info.name)
        reason = str(e) if isinstance(e, AdaError) else f"{type(e).__name__}: {e}"
        raise PluginError(
            f"plugin {info.name!r} (distribution {info.distribution}) failed to register: {reason}"
        ) from e
    finally:
        registry._set_current(PluginInfo("core"))


def load_plugins(*, skip_broken: bool = False, disable: set[str] | None = None) -> Registry:
    """Build a registry from ada-core's built-ins and every ``ada`` entry point.

    Args:
        skip_broken: record a failing plugin in ``registry.broken`` and go on, instead of
            raising PluginError.
        disable: plugin names to skip; defaults to ``ADA_DISABLE_PLUGINS``.

    Raises:
        PluginError: naming the entry point and its distribution, when a plugin fails to
            import or to register and ``skip_broken`` is false.
    """
    disable = disabled_plugins() if disable is None else disable
    pm = pluggy.PluginManager("ada")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    _register(pm, registry, builtins, PluginInfo("core", "ada-core", _version("ada-core")))
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disable or ep.name in seen:
            continue
        seen.add(ep.name)
        info = _plugin_info(ep)
        try:
            try:
                module: ModuleType = ep.load()
            except Exception as e:
                raise PluginError(
                    f"entry point {ep.name!r} ({ep.value}) of distribution {info.distribution} "
                    f"failed to load: {type(e).__name__}: {e}"
                ) from e
            _register(pm, registry, module, info)
        except PluginError as e:
            if not skip_broken:
                raise
            registry.broken.append((info, str(e)))
    return registry


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
