"""Plugin discovery: entry-point group ``ada``, one registrar hook, explicit loading.

Nothing is loaded at import: call :func:`load_plugins`. ada-seg's own built-ins are a plugin
module registered through the same hook.

pluggy does the hook work, as designed: ``pm.register`` validates each hook implementation
against :mod:`ada_core.hookspecs`, ``pm.check_pending`` refuses unknown (misspelled) hooks, and
each plugin's ``ada_register`` is called through ``pm.subset_hook_caller``, one plugin at a
time, so the registry knows which plugin is registering and a failing plugin is rolled back
whole. Every failure is a :class:`~ada_core.errors.PluginError` naming the entry point and its
distribution. pluggy's ``load_setuptools_entrypoints`` is not used: it silently skips an entry
point whose name is already taken, and it cannot tell the registry who is registering.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from importlib import metadata
from types import ModuleType

import pluggy

from ada_core import builtins, hookspecs
from ada_core.errors import AdaError, PluginError, PluginWarning, suggest
from ada_core.registry import PluginInfo, Registry

__all__ = ["ENTRY_POINT_GROUP", "DISABLE_ENV", "load_plugins", "disabled_plugins"]

ENTRY_POINT_GROUP = "ada"
DISABLE_ENV = "ADA_DISABLE_PLUGINS"
_BUILTINS = PluginInfo("core", "ada-seg")
_HOOK = "ada_register"


def disabled_plugins() -> set[str]:
    """Plugin (entry point) names listed in ``ADA_DISABLE_PLUGINS`` (comma separated)."""
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _plugin_info(ep: metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist
    if dist is None:
        return PluginInfo(ep.name, "(unknown distribution)", "")
    return PluginInfo(ep.name, dist.metadata["Name"], dist.version)


def _describe(ep: metadata.EntryPoint) -> str:
    return f"entry point {ep.name!r} ({ep.value}) of distribution {_plugin_info(ep).distribution}"


def _first_line(e: BaseException) -> str:
    # pluggy appends its whole name -> plugin table to some messages; the first line says it.
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class _Loader:
    """One PluginManager and one Registry, filled one plugin at a time."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("ada")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self._where: dict[str, str] = {}  # plugin name -> how messages name it

    def register(self, module: object, info: PluginInfo, where: str) -> None:
        """Register ``module`` with pluggy, check its hooks and run its ``ada_register``.

        Raises:
            PluginError: naming ``where``, when pluggy refuses the module, a hook is unknown or
                missing, or ``ada_register`` raises; nothing of the plugin is left behind.
        """
        self._add_to_pluggy(module, info, where)
        try:
            self._check_hooks(module, where)
        except PluginError:
            self.pm.unregister(name=info.name)
            raise
        # Only this plugin's implementation runs, so every class it adds is recorded as its own.
        others = [p for p in self.pm.get_plugins() if p is not module]
        caller = self.pm.subset_hook_caller(_HOOK, remove_plugins=others)
        self.registry._set_current(info)
        try:
            caller(registry=self.registry)
        except Exception as e:
            self.registry._remove_plugin(info.name)
            self.pm.unregister(name=info.name)
            reason = str(e) if isinstance(e, AdaError) else f"{type(e).__name__}: {e}"
            raise PluginError(f"{where} failed to register: {reason}") from e
        finally:
            self.registry._set_current(_BUILTINS)
        self._where[info.name] = where

    def _add_to_pluggy(self, module: object, info: PluginInfo, where: str) -> None:
        try:
            registered = self.pm.register(module, name=info.name)
        except Exception as e:
            if self.pm.get_plugin(info.name) is module:  # older pluggy may register halfway
                self.pm.unregister(name=info.name)
            hint = self._register_hint(module, info, e)
            raise PluginError(f"{where} could not be registered: {hint}") from e
        if registered is None:  # pluggy ignores a None plugin without a word
            raise PluginError(
                f"{where} could not be registered: it loaded {module!r}; point the entry point "
                f"at the module that defines {_HOOK}"
            )

    def _register_hint(self, module: object, info: PluginInfo, e: Exception) -> str:
        found = _first_line(e)
        if isinstance(e, pluggy.PluginValidationError):
            lines = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
            return f"{lines}. Expected the signature of ada_core.hookspecs: `{_HOOK}(registry)`"
        holder = self.pm.get_plugin(info.name)
        if holder is not None and holder is not module:
            return (
                f"{found}. The plugin name {info.name!r} is already taken by "
                f"{self._where.get(info.name, repr(holder))}; rename the entry point "
                "([project.entry-points.ada] in the distribution's pyproject.toml)"
            )
        other = self.pm.get_name(module)
        if other is not None:
            return (
                f"{found}. Its module {getattr(module, '__name__', module)!r} is already "
                f"registered as {self._where.get(other, repr(other))}; two entry points may not "
                "share one module: remove one of them or give each its own module"
            )
        return f"{type(e).__name__}: {found}"

    def _check_hooks(self, module: object, where: str) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            hooks = self.pm.get_hookcallers(module) or []
            unknown = sorted(h.name for h in hooks if not h.has_spec())
            hint = suggest(unknown[0], [_HOOK]) if unknown else f"ADA's one hook is {_HOOK!r}."
            raise PluginError(f"{where}: {_first_line(e)}. {hint}") from e
        if self.pm.hook.ada_register in (self.pm.get_hookcallers(module) or []):
            return
        name = getattr(module, "__name__", repr(module))
        if callable(getattr(module, _HOOK, None)):
            fix = (
                f"module {name!r} defines {_HOOK} without the hook marker, so pluggy does not "
                "see it: decorate it with `@hookimpl` (`from ada_core import hookimpl`)"
            )
        else:
            fix = (
                f"add to module {name!r}: `from ada_core import hookimpl` and `@hookimpl def "
                f"{_HOOK}(registry): registry.attributors.add(...)` (or .masks, .datasets, "
                ".models), or point the entry point at the module that has it"
            )
        raise PluginError(f"{where} implements no {_HOOK} hook; {fix}")


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    by_name: dict[str, list[metadata.EntryPoint]] = defaultdict(list)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        by_name[ep.name].append(ep)
    return {name: by_name[name] for name in sorted(by_name)}


def _conflict(name: str, eps: list[metadata.EntryPoint]) -> str:
    declared = sorted(((_plugin_info(ep), ep.value) for ep in eps), key=lambda d: d[0].distribution)
    who = ", ".join(f"{f'{i.distribution} {i.version}'.strip()} ({value})" for i, value in declared)
    return (
        f"entry point {name!r} is declared by {len(eps)} distributions: {who}; plugin names "
        f"must be unique, so none of them is loaded. Uninstall or rename all but one, or set "
        f"{DISABLE_ENV}={name} to do without them"
    )


def _warn_unmatched(disable: set[str], available: list[str], source: str) -> None:
    for name in sorted(disable - set(available)):
        if name == _BUILTINS.name:
            what = "ada-seg's built-ins, which cannot be disabled"
        else:
            what = "which matches no installed plugin"
        warnings.warn(
            f"{source} names {name!r}, {what}; it disables nothing. Installed plugins: "
            f"{suggest(name, available).removeprefix('Valid choices: ')}",
            PluginWarning,
            stacklevel=3,
        )


def load_plugins(*, skip_broken: bool = False, disable: set[str] | None = None) -> Registry:
    """Build a registry from ada-seg's built-ins and every ``ada`` entry point.

    Entry points are registered in name order. Each plugin's ``ada_register`` runs with the
    registry knowing the plugin (entry point, distribution, version), so every component keeps
    its provenance; a plugin that fails is rolled back whole.

    Args:
        skip_broken: record a failing plugin in ``registry.broken`` and go on, instead of
            raising PluginError.
        disable: plugin names to skip; defaults to ``ADA_DISABLE_PLUGINS``. A name that
            matches no installed plugin gives a :class:`~ada_core.errors.PluginWarning`.

    Returns:
        The registry holding every component that registered.

    Raises:
        PluginError: naming the entry point and its distribution, when ``skip_broken`` is
            false and a plugin fails to import, pluggy refuses it (its name is taken, its module
            is registered under another entry point, a hook has the wrong signature), it
            implements an unknown hook or no ``ada_register``, its ``ada_register`` raises or
            registers something invalid, or two distributions declare the same entry point.
            ada-seg's own built-ins failing always raises.
    """
    source = DISABLE_ENV if disable is None else "disable="
    disable = disabled_plugins() if disable is None else disable
    loader = _Loader()
    loader.register(
        builtins,
        PluginInfo(_BUILTINS.name, _BUILTINS.distribution, _version(_BUILTINS.distribution)),
        "ada-seg's built-ins (ada_core.builtins)",
    )
    by_name = _entry_points()
    _warn_unmatched(disable, list(by_name), source)
    for name, eps in by_name.items():
        if name in disable:
            continue
        try:
            if len(eps) > 1:
                raise PluginError(_conflict(name, eps))
            [ep] = eps
            loader.register(_load(ep), _plugin_info(ep), _describe(ep))
        except PluginError as e:
            if not skip_broken:
                raise
            loader.registry.broken.extend((_plugin_info(ep), str(e)) for ep in eps)
    return loader.registry


def _load(ep: metadata.EntryPoint) -> ModuleType:
    try:
        return ep.load()
    except Exception as e:
        raise PluginError(f"{_describe(ep)} failed to load: {type(e).__name__}: {e}") from e


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
