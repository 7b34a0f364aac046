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

from ada_core._version import __version__
from ada_core.errors import AdaError, DataError

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED_JOBS", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]

log = logging.getLogger("ada_core.cli")

#: Exit code of success.
EXIT_OK = 0
#: Exit code of bad input or a fault (invalid config, unknown component, unreadable file, disk).
EXIT_BAD_INPUT = 2
#: Exit code of a run in which a branch (or a standard phase) failed; the others finished.
EXIT_FAILED_JOBS = 3
#: Exit code after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK:<4} success
  {EXIT_BAD_INPUT:<4} bad input or a fault: invalid config or option, unknown component, unreadable
       file, full or read-only disk (the message names it and says how to fix it;
       --debug shows the traceback)
  {EXIT_FAILED_JOBS:<4} some job failed; the others finished (listed on stderr; --resume retries it)
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C): finished epochs are kept, --resume continues
"""


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
        from ada_core.engine.study import check_data

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


def _global_flags(p: argparse.ArgumentParser, sub: bool) -> None:
    """--debug, -q and -v; on a command (``sub``) they add to those given before it."""
    suffix, default = ("_sub", argparse.SUPPRESS) if sub else ("", None)
    where = "before the command" if sub else "after the command"
    g = p.add_argument_group(f"global options (also accepted {where})")
    g.add_argument("--debug", dest="debug" + suffix, action="store_true",
                   default=default if sub else False, help="show tracebacks of ADA errors")  # fmt: skip
    g.add_argument("-q", "--quiet", dest="quiet" + suffix, action="store_true",
                   default=default if sub else False,
                   help="no progress bars; only warnings and errors on stderr (the run's log "
                   "file keeps everything)")  # fmt: skip
    g.add_argument("-v", "--verbose", dest="verbose" + suffix, action="count",
                   default=default if sub else 0,
                   help="more detail on stderr and in the log: -v ADA's debug lines, -vv "
                   "every library's")  # fmt: skip


def _command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
             examples: str) -> argparse.ArgumentParser:  # fmt: skip
    p = sub.add_parser(name, help=summary, description=description,
                       epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _global_flags(p, sub=True)
    return p


def _config_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("config", type=Path, nargs="?" if optional else None, metavar="FILE",
                   help="experiment TOML file")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set train.cycles=3, "
                   "--set 'attributors[0].params.layer=decoder2', or a whole list: "
                   "--set 'attributors=[\"gradcam\", \"none\"]'; --set '~KEY' removes a KEY "
                   "the file sets")  # fmt: skip
    p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ada",
        description="Active Data Augmentation: saliency-guided occlusion training for "
        "segmentation. Results go to stdout; progress and logs to stderr and RUN/log/ada.log.",
        epilog="examples:\n  ada compare configs/demo.toml\n  ada -q compare configs/paper.toml "
        "--set data.params.root=/data/scgm\n  ada COMMAND --help\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ada {__version__}")
    _global_flags(parser, sub=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "plugins", "list every registered component and where it comes from",
                 "List every component (attributors, mask builders, data sets, models) of ADA and "
                 "its installed plugins, with plugin, distribution, version and config fields.",
                 "  ada plugins\n  ada plugins --json | head\n  ADA_DISABLE_PLUGINS=example ada plugins")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")
    p.set_defaults(func=_cmd_plugins)

    cfg = _command(sub, "config", "validate or show an experiment config; print the reference",
                   "Check a config, show it resolved, or print every configuration key.",
                   "  ada config validate configs/demo.toml\n  ada config show configs/demo.toml --json")  # fmt: skip
    actions = cfg.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, summary, description, example in [
        ("validate", "check FILE as a run would, before any work",
         "Check FILE (keys, values, components and their parameters, the model against the "
         "image size, the split) as `ada compare` does before it starts; loads no volume.",
         "  ada config validate configs/demo.toml\n"
         "  ada config validate configs/paper.toml --json --set data.params.root=/data/scgm"),
        ("show", "print FILE resolved: every key and component parameter with its default",
         "Print FILE with every default filled in, each component's parameters included "
         "(TOML that ada reads back, or --json).",
         "  ada config show configs/demo.toml\n  ada config show configs/demo.toml --json "
         "--set 'attributors[0].params.layer=decoder2'"),
        ("reference", "print every config key and component parameter (Markdown)",
         "Print the configuration reference (docs/config.md) from the field descriptions of "
         "the config and of every installed component.",
         "  ada config reference > docs/config.md"),
    ]:  # fmt: skip
        p = _command(actions, action, summary, description, example)
        if action == "reference":
            p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")
        else:
            _config_args(p)
            p.add_argument("--json", action="store_true", help="JSON instead of text / TOML")
        p.set_defaults(func=_cmd_config)

    for name, summary, description in [
        ("train", "standard phase + one ADA branch (the first attributor)",
         "Train the standard phase, then one ADA branch with the first attributor of FILE; "
         "score, aggregate and write the report."),
        ("compare", "standard phase once, one ADA branch per attributor, robustness and summary",
         "Run the study of FILE: per seed (and fold) the standard phase once, then one branch "
         "per attributor, each scored on validation, test, robustness and probes; then the "
         "statistics, summary and report. Finished jobs are reused."),
    ]:  # fmt: skip
        p = _command(sub, name, summary, description,
                     f"  ada {name} configs/demo.toml\n  ada {name} configs/demo.toml --seeds 0,1,2 "
                     f"--set train.cycles=3\n  ada {name} configs/demo.toml --resume")  # fmt: skip
        _config_args(p)
        p.add_argument("--resume", action="store_true", help="continue interrupted or failed jobs")
        p.add_argument("--force", action="store_true",
                       help="replace results of changed settings (the old ones are kept aside in "
                       "RUN/.superseded/, never deleted)")  # fmt: skip
        p.add_argument("--seeds", metavar="S,S,...", help="seeds of the study, e.g. 0,1,2 (train.seeds)")
        p.add_argument("--shard", metavar="I/N", help="run shard I of N of the jobs (job arrays; "
                       "then `ada aggregate RUN`); see docs/distributed.md")  # fmt: skip
        p.set_defaults(func=_cmd_run)

    p = _command(sub, "aggregate", "results.csv, statistics, summary and report from a run's finished jobs",
                 "Recompute results.csv, the statistics, summary.json / summary.txt and the report "
                 "from the finished jobs of RUN (e.g. after jobs ran elsewhere).",
                 "  ada aggregate runs/demo")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help="the run folder, e.g. runs/demo")
    p.set_defaults(func=_cmd_aggregate)
    p = _command(sub, "report", "(re)write RUN/report.html from an aggregated run folder",
                 "Write RUN/report.html from RUN/summary.json and the run folder's files.",
                 "  ada report runs/demo")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help="the run folder, e.g. runs/demo")
    p.set_defaults(func=_cmd_report)
    p = _command(sub, "contrast", "pair two finished runs: the difference B - A per site",
                 "Pair the results.csv rows of two finished runs of the same plan (seeds, folds, "
                 "branches, split) by (seed, fold, branch, set, person) and report the paired "
                 "difference B - A per branch, per site (Holm over the sites) and over all "
                 "persons, with the study's statistics (docs/statistics.md). Runs that do not "
                 "pair are refused, naming what differs.",
                 "  ada contrast runs/site-none runs/site-zscore\n"
                 "  ada contrast runs/site-none runs/site-histogram --set-name val --metric hsd")  # fmt: skip
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference run (A)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run compared with it (B)")
    p.add_argument("--set-name", dest="set_name", metavar="SET",
                   help="the evaluated set (default: test where both runs have one, else val)")
    p.add_argument("--metric", default="dsc", help="a metric column of results.csv (default dsc)")
    p.add_argument("--json", action="store_true", help="the rows as JSON instead of a table")
    p.set_defaults(func=_cmd_contrast)

    p = _command(sub, "predict", "segment NIfTI volumes with a branch's selected checkpoint",
                 "Segment grey matter in NIfTI volumes with the selected checkpoint of one job of "
                 "RUN, as nnU-Net does: -i takes files or folders (every .nii/.nii.gz in them); "
                 "case CASE (from CASE.nii.gz or CASE_0000.nii.gz) gives OUTPUT/CASE.nii.gz, and "
                 "OUTPUT/CASE_gmprob.nii.gz with --probabilities, on the input's own grid and "
                 "affine. No cord mask is needed: a sliding window over each whole slice finds "
                 "the grey matter, then crops around it are predicted as in training (--locate); "
                 "--cord centres the crops on cord masks instead. Every input is checked before "
                 "the model is loaded or anything is written.",
                 "  ada predict runs/demo --branch gradcam -i scans/ -o seg/\n"
                 "  ada predict runs/demo --branch gradcam --seed 1 -i a.nii.gz b_0000.nii.gz "
                 "-o seg/ --probabilities\n"
                 "  ada predict runs/demo --branch standard -i scans/ --cord cords/ -o seg/")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help="the run folder, e.g. runs/demo")
    p.add_argument("--input", "-i", nargs="+", required=True, type=Path, metavar="NIFTI|DIR",
                   help="volumes to segment (.nii or .nii.gz), or folders of them")  # fmt: skip
    p.add_argument("--output", "-o", required=True, type=Path, metavar="DIR", help="folder for the results")
    p.add_argument("--branch", help="branch label, or 'standard' (default: the run's only branch)")
    p.add_argument("--seed", type=int, help="seed of the replicate (default: the smallest)")
    p.add_argument("--fold", help="fold (runs with folds; default: the first)")
    p.add_argument("--probabilities", action="store_true", help="also write the probability maps")
    p.add_argument("--cord", nargs="+", type=Path, metavar="NIFTI|DIR",
                   help="spinal-cord masks centring the crops as in training: one per case in "
                   "order, or a folder of CASE.nii.gz (or CASE_seg.nii.gz)")  # fmt: skip
    p.add_argument("--locate", choices=("located", "sliding", "centre"), default="located",
                   help="without --cord: 'located' (default) finds the grey matter with a "
                   "sliding window, then predicts crops around it; 'sliding' keeps the sliding "
                   "window's own output (nnU-Net's); 'centre' centres the crops on the image")  # fmt: skip
    p.add_argument("--device", default="cpu", help="where the network runs: cpu, cuda, cuda:N")
    p.set_defaults(func=_cmd_predict)
    return parser


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
