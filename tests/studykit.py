"""Tiny studies for the engine, study, reliability and report tests (seconds on a CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ada_core.config import ExperimentConfig, parse_config, to_toml

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(
    output: Path, name: str = "tiny", attributors: Any = None, test: bool = False, **train: Any
) -> dict:
    """A compare that runs in seconds: 32 x 32 phantom slices, a 2-level U-Net of width 4.

    With ``test``, 7 persons: 4 train, 1 validation, 2 held-out test (else 5: 4 train, 1 val).
    """
    split: dict[str, Any] = {"val_fraction": 0.2, "seed": 0}
    if test:
        split.update(test="fraction", test_fraction=0.3)
    return {
        "name": name,
        "output": str(output),
        "data": {
            "name": "phantom",
            "params": {
                "n_subjects": 7 if test else 5,
                "slices_per_subject": 3,
                "size": [64, 64],
                "spacing": 0.5,
                "sites": 2,
                "context_cue": True,
                "seed": 1,
            },
            "preprocess": {"spacing": 0.5, "size": [32, 32]},
            "split": split,
        },
        "model": {"name": "unet-paper", "params": {"width": 4, "depth": 2, "dropout": 0.1}},
        "attributors": attributors
        if attributors is not None
        else [
            {"name": "gradcam"},
            {"name": "vanilla"},
            {"name": "random"},
            {"name": "none"},
            {"name": "none", "label": "none_twin"},
        ],
        # the window only where a branch erases (else its size would be a setting without effect)
        **({"mask": {"name": "window", "params": {"size": 6}}} if _erases(attributors) else {}),
        "train": {
            "standard_epochs": 2,
            "cycles": 2,
            "ada_epochs": 2,
            "batch_size": 8,
            "lr": 3e-3,
            "eval_batch_size": 32,
            # set only where they apply (a setting without effect is refused)
            **({"robustness_size": 8} if train.get("robustness", True) else {}),
            **({} if train.get("seeds") else {"seed": 0}),
            "device": "cpu",  # the checks recompute in float32 on the CPU
            "threads": 1,  # the shared test machine's cores are not oversubscribed
            **train,
        },
    }


def _erases(attributors: Any) -> bool:
    """Whether a branch of ``attributors`` (None: the default list) erases: any but `none`."""
    names = [a if isinstance(a, str) else a["name"] for a in (["gradcam"] if attributors is None else attributors)]
    return any(n != "none" for n in names)


def write_config(data: dict, path: Path) -> Path:
    path.write_text(to_toml(parse_config(data)))
    return path


def ada_cli(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m ada_core.cli ARGS`` in a subprocess (the real command line)."""
    return subprocess.run(
        [sys.executable, "-m", "ada_core.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def run_config(run: Path) -> ExperimentConfig:
    return ExperimentConfig.model_validate(json.loads((run / "config.json").read_text()))


def metrics_rows(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x]


def read_results(run: Path) -> list[dict]:
    import csv

    with open(run / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_pt(path: Path) -> dict:
    """A torch file of a run folder read independently of ADA (weights_only, as ADA reads it)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
