"""The ``ada`` command line.

Errors ADA raises on purpose (:class:`~ada_core.errors.AdaError`) print as a short message and
exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from ada_core import __version__
from ada_core.errors import AdaError

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["main"]


def _field_summary(config_cls: type) -> list[dict[str, Any]]:
    out = []
    for name, field in config_cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        out.append(
            {
                "name": name,
                "type": getattr(field.annotation, "__name__", str(field.annotation)),
                "default": default if isinstance(default, (int, float, str, bool, type(None))) else repr(default),
                "description": field.description or "",
            }
        )
    return out


def _plugins_rows(registry: Registry) -> list[dict[str, Any]]:
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


def _cmd_plugins(args: argparse.Namespace) -> int:
    from ada_core.plugins import load_plugins

    registry = load_plugins(skip_broken=args.skip_broken)
    rows = _plugins_rows(registry)
    broken = [{"plugin": p.name, "distribution": p.distribution, "error": e} for p, e in registry.broken]
    if args.json:
        print(json.dumps({"components": rows, "broken": broken}, indent=2))
        return 0
    headers = ["kind", "name", "plugin", "distribution", "version"]
    table = [[r[h] for h in headers] + [", ".join(f["name"] for f in r["fields"])] for r in rows]
    headers.append("config fields")
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    for line in [headers, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for b in broken:
        print(f"\nbroken plugin {b['plugin']!r} ({b['distribution']}) skipped: {b['error']}")
    return 0


def _load(args: argparse.Namespace) -> tuple[ExperimentConfig, Registry]:
    # Imported here so that `ada --help` and `ada --version` answer without importing torch.
    from ada_core.config import load_config
    from ada_core.plugins import load_plugins

    config = load_config(args.config, args.overrides)
    registry = load_plugins(skip_broken=getattr(args, "skip_broken", False))
    registry.validate_experiment(config, source=str(args.config))
    return config, registry


def _to_toml(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Minimal TOML writer for the resolved config (tables, arrays of tables, scalars)."""
    scalars, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "params":
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        elif value is not None:
            scalars.append(f"{key} = {json.dumps(value)}")
    lines = list(scalars)
    for key, value in tables:
        lines += ["", f"[{prefix}{key}]", *_to_toml(value, f"{prefix}{key}.")]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{prefix}{key}]]", *_to_toml(item, f"{prefix}{key}.")]
    return lines


def _cmd_config(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    if args.action == "validate":
        print(f"{args.config}: valid")
        return 0
    data = config.model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        text = "\n".join(_to_toml(data)).strip() + "\n"
        tomllib.loads(text)  # the printed config must be valid TOML
        print(text, end="")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ada_core.engine import run_experiment

    config, registry = _load(args)
    run_dir = run_experiment(
        config,
        registry,
        mode=args.command,
        quiet=args.quiet,
        resume=args.resume,
        config_source=str(args.config),
    )
    print(f"run folder: {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ada",
        description="Active Data Augmentation: saliency-guided occlusion training for segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"ada {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of ADA errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", help="list every registered component and where it comes from")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")
    p.set_defaults(func=_cmd_plugins)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", type=Path, help="experiment TOML file")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.cycles=3 (repeatable)",
        )
        p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")

    p = sub.add_parser("config", help="validate or show an experiment config")
    p.add_argument("action", choices=["validate", "show"], help="validate: check; show: print resolved")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="show as JSON instead of TOML")
    p.set_defaults(func=_cmd_config)

    for name, text in [
        ("train", "standard phase + one ADA branch (the first attributor)"),
        ("compare", "standard phase once, one ADA branch per attributor, robustness and summary"),
    ]:
        p = sub.add_parser(name, help=text)
        add_config_args(p)
        p.add_argument("--quiet", action="store_true", help="no progress bars (for logs)")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run")
        p.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AdaError as e:
        if args.debug:
            raise
        print(f"ada: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
