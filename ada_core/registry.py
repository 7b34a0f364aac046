"""The one component registry: typed sections that plugins add classes to.

A plugin's ``ada_register(registry)`` hook calls e.g. ``registry.attributors.add(MyAttributor)``.
``registry.build(kind, spec)`` validates the spec's params against the class's ``Config`` and
constructs the component.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from ada_core._component_rules import unused_by_components
from ada_core.errors import ConfigError, PluginError, UnknownComponentError, suggest
from ada_core.fieldtags import dotted_loc, field_conditions, unused_lines
from ada_core.interfaces import Attributor, Component, MaskBuilder, SegDataset, SegModel

if TYPE_CHECKING:
    from ada_core.config import ComponentSpec, ExperimentConfig

__all__ = ["PluginInfo", "Registry", "Section", "Entry"]

T = TypeVar("T", bound=Component)


@dataclass(frozen=True)
class PluginInfo:
    """Where a component came from."""

    name: str
    distribution: str = "ada-seg"
    version: str = ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    cls: type[T]
    plugin: PluginInfo


def _check_component_class(cls: Any, base: type, kind: str) -> None:
    """Raise PluginError unless ``cls`` correctly implements ``base``."""
    what = getattr(cls, "__qualname__", repr(cls))
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise PluginError(f"{what} registered as {kind} does not subclass {base.__name__}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PluginError(f"{kind} {what} does not implement the abstract methods: {missing}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{kind} {what} needs a non-empty class attribute `name: ClassVar[str]`")
    config = getattr(cls, "Config", None)
    if not (inspect.isclass(config) and issubclass(config, BaseModel)):
        raise PluginError(f"{kind} {name!r}: `Config` must be a pydantic BaseModel subclass")
    settings = config.model_config
    if settings.get("extra") != "forbid" or not settings.get("frozen"):
        raise PluginError(
            f"{kind} {name!r}: Config must set extra='forbid' and frozen=True "
            "(subclass ada_core.interfaces.ComponentConfig)"
        )
    for field_name, field in config.model_fields.items():
        for c in field_conditions(field):
            if c.key not in config.model_fields or c.key == field_name:
                raise PluginError(
                    f"{kind} {name!r}: Config field {field_name!r} is used_when {c.key!r}, which "
                    f"is no other field of its Config ({', '.join(config.model_fields)}); a "
                    "component's condition names one of its own parameters"
                )
        if not field.description:
            raise PluginError(f"{kind} {name!r}: Config field {field_name!r} has no description")
        if field.default is PydanticUndefined and field.default_factory is None:
            raise PluginError(f"{kind} {name!r}: Config field {field_name!r} has no default")
    if base is SegModel and getattr(cls, "default_attribution_layer", None) is None:
        raise PluginError(f"model {name!r} must set `default_attribution_layer`")


class Section(Generic[T]):
    """Components of one kind, by name."""

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._current: PluginInfo = PluginInfo("core")

    def add(self, cls: type[T]) -> type[T]:
        """Register ``cls`` under ``cls.name``; usable as a class decorator."""
        _check_component_class(cls, self.base, self.kind)
        if cls.name in self._entries:
            other = self._entries[cls.name].plugin
            raise PluginError(
                f"{self.kind} {cls.name!r} is registered twice: by plugin {other.name!r} "
                f"({other.distribution}) and by plugin {self._current.name!r} "
                f"({self._current.distribution}); names must be unique"
            )
        self._entries[cls.name] = Entry(cls, self._current)
        return cls

    def get(self, name: str) -> type[T]:
        try:
            return self._entries[name].cls
        except KeyError:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}. {suggest(name, self._entries)}"
            ) from None

    def entry(self, name: str) -> Entry[T]:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def config(self, name: str, params: dict[str, Any], where: str = "params") -> BaseModel:
        """Validate ``params`` against the component's Config; errors name ``where``."""
        cls = self.get(name)
        try:
            return cls.Config(**params)
        except ValidationError as e:
            lines = [f"{self.kind} {name!r}: invalid parameters"]
            fields = list(cls.Config.model_fields)
            for err in e.errors():
                key = dotted_loc(err["loc"])
                unused = unused_lines(err, f"{where}.{key}." if key else f"{where}.")
                if unused is not None:
                    lines += [f"  {line}" for line in unused]
                    continue
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = f"unknown parameter. {suggest(key, fields)}"
                elif "input" in err:
                    msg += f" (got {err['input']!r})"
                lines.append(f"  {where}.{key}: {msg}")
            raise ConfigError("\n".join(lines)) from None

    def build(self, name: str, params: dict[str, Any] | None = None, where: str = "params") -> T:
        return self.get(name)(self.config(name, params or {}, where))

    def _remove_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self._entries.items() if e.plugin.name == plugin]:
            del self._entries[name]


class Registry:
    """All components, by kind: ``attributors``, ``masks``, ``datasets``, ``models``."""

    def __init__(self) -> None:
        self.attributors: Section[Attributor] = Section("attributor", Attributor)
        self.masks: Section[MaskBuilder] = Section("mask builder", MaskBuilder)
        self.datasets: Section[SegDataset] = Section("dataset", SegDataset)
        self.models: Section[SegModel] = Section("model", SegModel)
        #: Plugins that failed and were skipped: (plugin, error message).
        self.broken: list[tuple[PluginInfo, str]] = []

    @property
    def sections(self) -> dict[str, Section[Any]]:
        return {
            "attributor": self.attributors,
            "mask": self.masks,
            "dataset": self.datasets,
            "model": self.models,
        }

    def _set_current(self, plugin: PluginInfo) -> None:
        for section in self.sections.values():
            section._current = plugin

    def _remove_plugin(self, plugin: str) -> None:
        for section in self.sections.values():
            section._remove_plugin(plugin)

    def build(self, kind: str, spec: ComponentSpec, where: str | None = None) -> Any:
        """Construct a component from a :class:`ComponentSpec` of the given kind."""
        return self.sections[kind].build(spec.name, spec.params, where or f"{kind}.params")

    def validate_experiment(self, config: ExperimentConfig, source: str = "<config>") -> None:
        """Check every component name and its params before any work starts."""
        checks: list[tuple[str, ComponentSpec, str]] = [
            ("dataset", config.data, "data"),
            ("model", config.model, "model"),
            ("mask", config.mask, "mask"),
        ]
        checks += [("attributor", spec, f"attributors[{i}]") for i, spec in enumerate(config.attributors)]
        checks += [("dataset", spec, f"evaluate[{i}]") for i, spec in enumerate(config.evaluate)]
        for kind, spec, where in checks:
            try:
                self.sections[kind].config(spec.name, spec.params, f"{where}.params")
            except ConfigError as e:
                raise type(e)(f"{source}: {where}.name = {spec.name!r}: {e}") from None
        unused = unused_by_components(config, self)
        if unused:
            lines = "\n".join(f"  {u.message()}" for u in unused)
            raise ConfigError(f"{source}: invalid configuration\n{lines}")
