"""The ``ada`` command line.

Results go to stdout; progress, notes and warnings go to stderr (and to the run's
``log/ada.log``). Errors ADA raises on purpose (:class:`~ada_core.errors.AdaError`) print as a
short message and exit with code 2; ``--debug`` shows the traceback. Global flags (``--debug``,
``-q``, ``-v``) are accepted before or after the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ada_core._cli_parser import (
    EXIT_BAD_INPUT,
    EXIT_FAILED_JOBS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_parser,
)
from ada_core.errors import AdaError, DataError

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED_JOBS", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]

log = logging.getLogger("ada_core.cli")


def _cmd_plugins(args: argparse.Namespace) -> int:
    from ada_core._cli_show import plugins_rows, plugins_table
    from ada_core.plugins import load_plugins

    registry = load_plugins(skip_broken=args.skip_broken)
    rows = plugins_rows(registry)
    broken = [{"plugin": p.name, "distribution": p.distribution, "error": e} for p, e in registry.broken]
    if args.json:
        print(json.dumps({"components": rows, "broken": broken}, indent=2))
        return EXIT_OK
    print("\n".join(plugins_table(rows)))
    for b in broken:
        print(f"\nbroken plugin {b['plugin']!r} ({b['distribution']}) skipped: {b['error']}")
    return EXIT_OK


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
        return EXIT_OK
    config, registry = _load(args)
    from ada_core.engine import build_plan
    from ada_core.tracking import check_tracking

    plan = build_plan(config, registry, source=str(args.config))
    for note in plan.notes:
        log.warning("%s: %s", args.config, note)
    check_tracking(config)
    if args.action == "validate":
        from ada_core._allocator import check_choice
        from ada_core.engine.study import check_data

        check_choice()  # ADA_MALLOC, read when the run starts

        notes = check_data(plan)
        if args.json:
            print(json.dumps({"config": str(args.config), "valid": True, "data": notes,
                              "run_dir": str(plan.run_dir)}, indent=2))  # fmt: skip
        else:
            print(f"{args.config}: valid ({notes})")
        return EXIT_OK
    from ada_core._cli_show import resolved_config, resolved_toml

    data = resolved_config(config, registry)
    print(json.dumps(data, indent=2) if args.json else resolved_toml(data), end="\n" if args.json else "")
    return EXIT_OK


def _again(argv: Sequence[str]) -> str:
    """The command line that continues an interrupted run."""
    words = ["ada", *argv]
    return " ".join(words if "--resume" in words else [*words, "--resume"])


def _cmd_run(args: argparse.Namespace) -> int:
    from ada_core.api import run

    config, registry = _load(args)
    try:
        result = run(config, mode=args.command, resume=args.resume, force=args.force,
                     quiet=args.quiet, registry=registry, verbose=args.verbose,
                     debug=args.debug, source=str(args.config),
                     shard=args.shard)  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished epochs are kept. Continue with: {_again(args.argv)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    print(result.text, end="", flush=True)
    if result.report is not None:  # not a --shard, not a torchrun rank other than 0
        print(f"report: {result.report}")
    print(f"run folder: {result.run_dir}")
    if result.failed:
        print(f"ada: {len(result.failed)} job(s) failed:", file=sys.stderr)
        for message in result.failed:
            print(f"  {message}", file=sys.stderr)
        return EXIT_FAILED_JOBS
    return EXIT_OK


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from ada_core.engine import aggregate
    from ada_core.report.html import write_report
    from ada_core.runfolder import RunLayout, RunLock

    layout = RunLayout(args.run)
    if not layout.study.is_file():  # before the lock: never create files in a stranger's folder
        raise DataError(f"{args.run}: no study.json, so not an ADA run folder; run `ada "
                        "compare` first")  # fmt: skip
    with RunLock(layout, shared=True):
        result = aggregate(args.run)
    print(result.text, end="")
    print(f"report: {write_report(args.run)}")
    return EXIT_OK if result.summary.complete else EXIT_FAILED_JOBS


def _cmd_report(args: argparse.Namespace) -> int:
    from ada_core.report.html import write_report

    print(f"report: {write_report(args.run)}")
    return EXIT_OK


def _cmd_contrast(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ada_core.stats._contrast import contrast_runs, differing_settings, format_contrast

    rows = contrast_runs(args.run_a, args.run_b, set_=args.set_name, metric=args.metric)
    for key, a, b in differing_settings(args.run_a, args.run_b):
        print(f"setting {key}: A {a!r}, B {b!r}", file=sys.stderr)
    if args.json:
        clean = [{k: None if isinstance(v, float) and v != v else v  # NaN is not JSON
                  for k, v in dataclasses.asdict(r).items()} for r in rows]
        print(json.dumps(clean, indent=1))
    else:
        print(format_contrast(rows, str(args.run_a), str(args.run_b)), end="")
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from ada_core.predict import predict_files

    written = predict_files(args.run, args.input, args.output, branch=args.branch, seed=args.seed,
                            fold=args.fold, probabilities=args.probabilities, cords=args.cord or (),
                            locate=args.locate, device=args.device)  # fmt: skip
    for path in written:
        print(path)
    return EXIT_OK


def _merge_globals(args: argparse.Namespace) -> None:
    args.debug = args.debug or getattr(args, "debug_sub", False)
    args.quiet = args.quiet or getattr(args, "quiet_sub", False)
    args.verbose = args.verbose + getattr(args, "verbose_sub", 0)


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``ada plugins --json | head``): end without a word."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
    except (OSError, ValueError):
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    from ada_core.logs import configure, reset

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _merge_globals(args)
    args.argv = argv
    configure(args.verbose, args.quiet)
    try:
        return args.func(args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except AdaError as e:
        if args.debug:
            raise
        print(f"ada: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # the operating system refused: disk full, read-only, permissions
        if args.debug:
            raise
        print(f"ada: error: {_os_error(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        reset()


def _os_error(e: OSError) -> str:
    """One sentence for an operating-system fault: what, where, and what to do."""
    import errno

    where = f" {e.filename}" if e.filename else " a file of the run (no name given)"
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
