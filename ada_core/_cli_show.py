"""What ``ada plugins`` and ``ada config show`` print: components with their parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["plugins_rows", "plugins_table", "resolved_config", "resolved_toml"]


def _field_summary(config_cls: type) -> list[dict[str, Any]]:
    out = []
    for name, field in config_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        plain = isinstance(default, (int, float, str, bool, type(None)))
        out.append(
            {
                "name": name,
                "type": getattr(field.annotation, "__name__", str(field.annotation)),
                "default": default if plain else repr(default),
                "description": field.description or "",
            }
        )
    return out


def plugins_rows(registry: Registry) -> list[dict[str, Any]]:
    """One row per registered component: kind, name, provenance, class, config fields."""
    rows = []
    for kind, section in registry.sections.items():
        for entry in section:
            rows.append(
                {
                    "kind": kind,
                    "name": entry.cls.name,
                    "plugin": entry.plugin.name,
                    "distribution": entry.plugin.distribution,
                    "version": entry.plugin.version,
                    "class": f"{entry.cls.__module__}.{entry.cls.__qualname__}",
                    "fields": _field_summary(entry.cls.Config),
                }
            )
    return rows


def plugins_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as aligned text lines (the config fields by name)."""
    headers = ["kind", "name", "plugin", "distribution", "version"]
    table = [[r[h] for h in headers] + [", ".join(f["name"] for f in r["fields"])] for r in rows]
    headers.append("config fields")
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
            for line in [headers, *table]]  # fmt: skip


def resolved_config(config: ExperimentConfig, registry: Registry) -> dict[str, Any]:
    """``config`` as JSON data with every component's params resolved: each parameter of the
    component's ``Config``, with its default where the file does not set it."""
    from ada_core._component_rules import active_params
    from ada_core.fieldtags import active_data

    # A field without effect under the chosen settings is left out (it holds its default), so
    # the data reads back to the same config.
    data = active_data(config)

    def resolve(kind: str, spec: dict[str, Any], where: str) -> None:
        section = registry.sections[kind]
        params = section.config(spec["name"], spec["params"], f"{where}.params")
        if kind == "attributor":
            params = section.get(spec["name"]).resolve_config(params, config.train)
        spec["params"] = active_params(params, config, registry)

    resolve("dataset", data["data"], "data")
    resolve("model", data["model"], "model")
    resolve("mask", data["mask"], "mask")
    for i, spec in enumerate(data["attributors"]):
        resolve("attributor", spec, f"attributors[{i}]")
    for i, spec in enumerate(data["evaluate"]):
        resolve("dataset", spec, f"evaluate[{i}]")
    return data


def resolved_toml(data: dict[str, Any]) -> str:
    """:func:`resolved_config`'s data as TOML that ``ada`` reads back to the same config."""
    from ada_core.config import toml_lines

    return "\n".join(toml_lines(data, show_none=True)).strip() + "\n"
