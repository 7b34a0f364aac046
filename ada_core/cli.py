"""The ``ada`` command line.

Errors ADA raises on purpose (:class:`~ada_core.errors.AdaError`) print as a short message and
exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
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

    overrides = list(args.overrides)
    if getattr(args, "seeds", None):
        overrides.append(f"train.seeds=[{args.seeds}]")
    config = load_config(args.config, overrides)
    registry = load_plugins(skip_broken=getattr(args, "skip_broken", False))
    return config, registry


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "reference":
        from ada_core.plugins import load_plugins
        from ada_core.reference import config_reference

        print(config_reference(load_plugins(skip_broken=args.skip_broken)), end="")
        return 0
    if args.config is None:
        raise AdaError(f"`ada config {args.action}` needs a config FILE")
    config, registry = _load(args)
    from ada_core.engine import build_plan
    from ada_core.engine.study import check_data

    plan = build_plan(config, registry, source=str(args.config))
    if args.action == "validate":
        notes = check_data(plan)
        print(f"{args.config}: valid ({notes})")
        return 0
    if args.json:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        from ada_core.config import to_toml

        print(to_toml(config), end="")
    return 0


#: Exit code of a run in which a branch (or a standard phase) failed; the others finished.
EXIT_FAILED_JOBS = 3
#: Exit code after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def _cmd_run(args: argparse.Namespace) -> int:
    from ada_core.engine import run_study
    from ada_core.report.html import write_report

    config, registry = _load(args)
    try:
        result = run_study(
            config,
            registry,
            mode=args.command,
            quiet=args.quiet,
            resume=args.resume,
            force=args.force,
            source=str(args.config),
            debug=args.debug,
            shard=args.shard,
        )
    except KeyboardInterrupt:
        again = " ".join(["ada", *sys.argv[1:]]) if "--resume" in sys.argv else " ".join(
            ["ada", *sys.argv[1:], "--resume"])  # fmt: skip
        print(f"\ninterrupted; finished epochs are kept. Continue with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.text, end="", flush=True)
    if result.aggregated:  # not a --shard, not a torchrun rank other than 0
        print(f"report: {write_report(result.run_dir)}")
    print(f"run folder: {result.run_dir}")
    if result.failed:
        print(f"ada: {len(result.failed)} job(s) failed:", file=sys.stderr)
        for message in result.failed:
            print(f"  {message}", file=sys.stderr)
        return EXIT_FAILED_JOBS
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from ada_core.engine import aggregate
    from ada_core.engine.lock import RunLock
    from ada_core.report.html import write_report

    with RunLock(args.run, shared=True):
        result = aggregate(args.run)
    print(result.text, end="")
    print(f"report: {write_report(args.run)}")
    return 0 if result.summary.complete else EXIT_FAILED_JOBS


def _cmd_report(args: argparse.Namespace) -> int:
    from ada_core.report.html import write_report

    print(f"report: {write_report(args.run)}")
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

    def add_config_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
        p.add_argument("config", type=Path, nargs="?" if optional else None, help="experiment TOML file")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.cycles=3 (repeatable)",
        )
        p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")

    p = sub.add_parser("config", help="validate or show an experiment config; print the reference")
    p.add_argument(
        "action",
        choices=["validate", "show", "reference"],
        help="validate: check FILE; show: print FILE resolved with defaults; "
        "reference: every config key and component parameter (Markdown)",
    )
    add_config_args(p, optional=True)
    p.add_argument("--json", action="store_true", help="show as JSON instead of TOML")
    p.set_defaults(func=_cmd_config)

    for name, text in [
        ("train", "standard phase + one ADA branch (the first attributor)"),
        ("compare", "standard phase once, one ADA branch per attributor, robustness and summary"),
    ]:
        p = sub.add_parser(name, help=text)
        add_config_args(p)
        p.add_argument("--quiet", action="store_true", help="no progress bars (for logs)")
        p.add_argument("--resume", action="store_true", help="continue interrupted or failed jobs")
        p.add_argument(
            "--force", action="store_true",
            help="replace results of changed settings (the old ones are kept aside in "
            "RUN/.superseded/, never deleted)",
        )  # fmt: skip
        p.add_argument(
            "--seeds", metavar="S,S,...", help="seeds of the study, e.g. 0,1,2 (train.seeds)"
        )
        p.add_argument("--shard", metavar="I/N", help="run shard I of N of the jobs (job arrays; "
                       "then `ada aggregate RUN`); see docs/distributed.md")  # fmt: skip
        p.set_defaults(func=_cmd_run)
    p = sub.add_parser(
        "aggregate", help="results.csv, statistics, summary and report from a run's finished jobs"
    )
    p.add_argument("run", type=Path, help="the run folder, e.g. runs/demo")
    p.set_defaults(func=_cmd_aggregate)
    p = sub.add_parser("report", help="(re)write RUN/report.html from an aggregated run folder")
    p.add_argument("run", type=Path, help="the run folder, e.g. runs/demo")
    p.set_defaults(func=_cmd_report)
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
    except OSError as e:  # the operating system refused: disk full, read-only, permissions
        if args.debug:
            raise
        print(f"ada: error: {_os_error(e)}", file=sys.stderr)
        return 2


def _os_error(e: OSError) -> str:
    """One sentence for an operating-system fault: what, where, and what to do."""
    import errno

    where = f" {e.filename}" if e.filename else ""
    advice = {
        errno.ENOSPC: "the disk is full: free space or set `output` to another disk",
        errno.EROFS: "the file system is read-only: set `output` to a writable folder",
        errno.EACCES: "permission denied: set `output` to a folder you may write",
        errno.EPERM: "permission denied: set `output` to a folder you may write",
        errno.ENOTDIR: "a path component is a file, not a folder: fix `output` or the path",
        errno.EISDIR: "a folder is where a file should be: fix the path",
        errno.EEXIST: "a file is in the way: move it or choose another `output`/`name`",
    }.get(e.errno or 0, "check the path and the disk")
    return f"cannot use{where} ({e.strerror or e}): {advice}; nothing finished was lost"


if __name__ == "__main__":
    sys.exit(main())
