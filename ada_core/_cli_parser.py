"""The ``ada`` argument parser (:func:`build_parser`) and the exit codes its help lists; the
commands it dispatches to live in :mod:`ada_core.cli`, which re-exports both."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from ada_core._version import __version__

__all__ = ["EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_FAILED_JOBS", "EXIT_INTERRUPTED", "EXIT_OK",
           "build_parser"]

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
    """The ``ada`` parser: every command, its options, help and examples."""
    from ada_core import cli  # the commands (cli imports this module first)

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

    _add_plugins(sub, cli)
    _add_config(sub, cli)
    _add_run(sub, cli)
    _add_folder_commands(sub, cli)
    _add_contrast(sub, cli)
    _add_predict(sub, cli)
    return parser


def _add_plugins(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada plugins`."""
    p = _command(sub, "plugins", "list every registered component and where it comes from",
                 "List every component (attributors, mask builders, data sets, models) of ADA and "
                 "its installed plugins, with plugin, distribution, version and config fields.",
                 "  ada plugins\n  ada plugins --json | head\n  ADA_DISABLE_PLUGINS=example ada plugins")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--skip-broken", action="store_true", help="skip plugins that fail to load")
    p.set_defaults(func=c._cmd_plugins)


def _add_config(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada config validate | show | reference`."""
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
        p.set_defaults(func=c._cmd_config)


def _add_run(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada train` and `ada compare`."""
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
        p.set_defaults(func=c._cmd_run)


def _add_folder_commands(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada aggregate` and `ada report` (a run folder in, its files out)."""
    p = _command(sub, "aggregate", "results.csv, statistics, summary and report from a run's finished jobs",
                 "Recompute results.csv, the statistics, summary.json / summary.txt and the report "
                 "from the finished jobs of RUN (e.g. after jobs ran elsewhere).",
                 "  ada aggregate runs/demo")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help="the run folder, e.g. runs/demo")
    p.set_defaults(func=c._cmd_aggregate)
    p = _command(sub, "report", "(re)write RUN/report.html from an aggregated run folder",
                 "Write RUN/report.html from RUN/summary.json and the run folder's files.",
                 "  ada report runs/demo")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help="the run folder, e.g. runs/demo")
    p.set_defaults(func=c._cmd_report)


def _add_contrast(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada contrast RUN_A RUN_B`."""
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
    p.set_defaults(func=c._cmd_contrast)


def _add_predict(sub: argparse._SubParsersAction, c: ModuleType) -> None:
    """`ada predict`."""
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
    p.set_defaults(func=c._cmd_predict)
