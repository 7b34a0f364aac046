"""``run_experiment``: one standard phase, its branches, robustness, analysis and the summary.

Run folder ``<output>/<name>/``::

    config.toml  config.json        the resolved configuration
    standard/    key.json metrics.jsonl best.pt last.pt final.pt
    branches/<label>/  metrics.jsonl best.pt last.pt keep.pt cycle1.pt
    analysis/    iou.json samples.png
    summary.json summary.txt
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ada_core.config import ComponentSpec, ExperimentConfig, to_toml
from ada_core.data import SliceSet, load_slices, split_slices
from ada_core.engine.analysis import first_cycle_keeps, save_iou, save_samples
from ada_core.engine.checkpoint import atomic_write_text, load_checkpoint, write_json
from ada_core.engine.loop import Runtime, evaluate, evaluate_robustness
from ada_core.engine.phases import PhaseResult, Session, run_branch, run_standard
from ada_core.errors import ConfigError, DataError
from ada_core.interfaces import SegModel
from ada_core.registry import Registry
from ada_core.report.curves import convergence, read_curve, save_convergence_plot
from ada_core.report.html import write_report
from ada_core.report.positions import save_position_maps
from ada_core.report.tables import format_summary

__all__ = ["branch_key", "resolve_device", "run_experiment", "standard_key"]

#: TrainConfig fields that determine the standard phase; every other field is branch-only.
STANDARD_TRAIN_FIELDS = frozenset(
    {"standard_epochs", "batch_size", "lr", "loss", "seed", "amp", "channels_last"}
)
#: TrainConfig fields that determine a branch's training (besides the standard phase). Not
#: `cycles`: more cycles continue a branch's schedule unchanged, so a resumed run may extend it.
BRANCH_TRAIN_FIELDS = frozenset({"ada_epochs", "augment_ada_images", "control_steps"})
#: PreprocessConfig fields that do not change the slices.
_PREPROCESS_NEUTRAL = {"cache", "on_error"}


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolve_device(spec: str) -> torch.device:
    """``train.device`` -> a torch device; 'auto' is CUDA when available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"train.device = {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {spec!r} but CUDA is not available; use 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def standard_key(config: ExperimentConfig, data_fingerprint: str) -> str:
    """Hash of everything that determines the standard phase (not the branches).

    Includes the device type: CPU and CUDA runs draw different random streams and keep
    generator states that do not fit each other.
    """
    train = config.train.model_dump(mode="json")
    data = config.data.model_dump(mode="json")
    data["preprocess"] = {
        k: v for k, v in data["preprocess"].items() if k not in _PREPROCESS_NEUTRAL
    }
    return _digest(
        {
            "data": data,
            "fingerprint": data_fingerprint,
            "model": config.model.model_dump(mode="json"),
            "augment": config.augment.model_dump(mode="json"),
            "train": {k: train[k] for k in sorted(STANDARD_TRAIN_FIELDS)},
            "device": resolve_device(config.train.device).type,
        }
    )


def branch_key(config: ExperimentConfig, spec: ComponentSpec, standard: str) -> str:
    """Hash of everything that determines one branch: its standard phase, its attributor, the
    mask builder and the branch-affecting train fields. A resumed branch must match it."""
    train = config.train.model_dump(mode="json")
    return _digest(
        {
            "standard": standard,
            "attributor": spec.model_dump(mode="json"),
            "mask": config.mask.model_dump(mode="json"),
            "train": {k: train[k] for k in sorted(BRANCH_TRAIN_FIELDS)},
        }
    )


def _write_config(run_dir: Path, config: ExperimentConfig, source: str) -> None:
    head = f"resolved configuration of run {config.name!r}" + (f" (from {source})" if source else "")
    atomic_write_text(run_dir / "config.toml", to_toml(config, head))
    write_json(run_dir / "config.json", config.model_dump(mode="json"))


def _standard_phase(s: Session, folder: Path, key: str, resume: bool) -> PhaseResult:
    """Reuse a finished standard phase with the same key, else (re)train it."""
    cfg = s.config.train
    key_file = folder / "key.json"
    old = json.loads(key_file.read_text()) if key_file.is_file() else {}
    same = old.get("key") == key
    if same and old.get("complete") and cfg.reuse_standard and (folder / "final.pt").is_file():
        info = old["result"]
        msg = f"standard: reusing the finished phase in {folder} (key {key})"
        print(msg, flush=True)
        return PhaseResult(**info)
    if folder.exists() and not (resume and same):
        shutil.rmtree(folder)
    write_json(key_file, {"key": key, "complete": False})
    result = run_standard(s, folder, resume=resume and same)
    info = {
        k: getattr(result, k)
        for k in ("best_epoch", "best_cycle", "best_metrics", "seconds", "epochs")
    }
    write_json(key_file, {"key": key, "complete": True, "result": info})
    return result


def _checkpoint_model(s: Session, checkpoint: Path) -> SegModel:
    model = s.new_model()
    model.load_state_dict(load_checkpoint(checkpoint, s.runtime.device)["model"])
    return model


def _evaluation_sets(config: ExperimentConfig, registry: Registry) -> dict[str, SliceSet]:
    """The extra evaluation sets (``config.evaluate``), loaded before any training."""
    sets: dict[str, SliceSet] = {}
    for i, spec in enumerate(config.evaluate):
        dataset = registry.build("dataset", spec, f"evaluate[{i}].params")
        slices = load_slices(dataset, spec.preprocess, cache_dir=Path(config.output) / ".cache")
        if spec.part != "all":
            train, val = split_slices(slices, spec.split)
            slices = val if spec.part == "val" else train
        if len(slices) == 0:
            raise DataError(
                f"evaluate[{i}] ({spec.key!r}, dataset {spec.name!r}, part {spec.part!r}) has "
                "no slices; check its params, preprocess and split"
            )
        sets[spec.key] = slices
    return sets


def run_experiment(
    config: ExperimentConfig,
    registry: Registry,
    *,
    mode: Literal["train", "compare"],
    quiet: bool = False,
    resume: bool = False,
    config_source: str = "",
) -> Path:
    """Run Algorithm 1 with branches and write the run folder.

    Args:
        config: the resolved experiment.
        registry: the components (``load_plugins()``).
        mode: ``"train"``: the standard phase and the first attributor's branch;
            ``"compare"``: the standard phase once and one branch per attributor, all from the
            same weights, optimizer and random state.
        quiet: plain log lines instead of progress bars.
        resume: continue phases from their last complete epoch.
        config_source: where the config came from (recorded in config.toml).

    Returns:
        The run folder ``config.output / config.name``.

    Raises:
        ConfigError: bad component parameters, device or mode (before any work).
        DataError: the data gives no training or no validation slice.
    """
    t_start = time.perf_counter()
    if mode not in ("train", "compare"):
        raise ConfigError(f"run_experiment: mode must be 'train' or 'compare', got {mode!r}")
    registry.validate_experiment(config, config_source or "<config>")
    if not config.attributors:
        raise ConfigError("attributors is empty: list at least one (or 'none' for the control)")
    specs = list(config.attributors) if mode == "compare" else list(config.attributors[:1])
    cfg = config.train
    device = resolve_device(cfg.device)
    runtime = Runtime(device, amp=cfg.amp, channels_last=cfg.channels_last)
    run_dir = Path(config.output) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run_dir, config, config_source)

    dataset = registry.build("dataset", config.data, "data.params")
    slices = load_slices(dataset, config.data.preprocess, cache_dir=Path(config.output) / ".cache")
    train, val = split_slices(slices, config.data.split)
    if len(train) == 0 or len(val) == 0:
        raise DataError(
            f"dataset {config.data.name!r}: the split left {len(train)} training and {len(val)} "
            "validation slices; the engine needs both (check data.split and the data set size)"
        )
    extra = {k: v.to(device) for k, v in _evaluation_sets(config, registry).items()}
    s = Session(config, registry, runtime, train.to(device), val.to(device), quiet)
    if not quiet:
        print(
            f"run {config.name!r} on {device}: {len(train)} training, {len(val)} validation "
            f"slices of {tuple(train.images.shape[-2:])}; branches: {[sp.key for sp in specs]}",
            flush=True,
        )

    key = standard_key(config, dataset.fingerprint())
    standard = _standard_phase(s, run_dir / "standard", key, resume)
    final = run_dir / "standard" / "final.pt"

    model = s.new_model()
    model.load_state_dict(load_checkpoint(final, device)["model"])
    first = first_cycle_keeps(s, specs, model)
    del model

    branches: dict[str, PhaseResult] = {}
    for spec in specs:
        folder = run_dir / "branches" / spec.key
        bkey = branch_key(config, spec, key)
        key_file = folder / "key.json"
        old_key = json.loads(key_file.read_text()).get("key") if key_file.is_file() else None
        if folder.exists() and (not resume or old_key != bkey):
            if resume:
                print(
                    f"branch {spec.key}: its standard phase or settings changed since the "
                    "interrupted run; training it afresh",
                    flush=True,
                )
            shutil.rmtree(folder)
        write_json(key_file, {"key": bkey, "standard_key": key})
        branches[spec.key] = run_branch(
            s,
            spec,
            folder,
            final,
            first.keeps.get(spec.key),
            first.counters.get(spec.key),
            resume,
            first.attributors.get(spec.key),
        )

    builder = registry.build("mask", config.mask, "mask.params")
    size = cfg.robustness_size or int(getattr(builder.config, "size", 20))
    t_rob = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    by_position: dict[str, Tensor] = {}
    for label, result, ckpt in [("standard", standard, run_dir / "standard" / "best.pt")] + [
        (k, r, run_dir / "branches" / k / "best.pt") for k, r in branches.items()
    ]:
        model = _checkpoint_model(s, ckpt)
        robust = None
        if cfg.robustness:
            robust, by_position[label] = evaluate_robustness(
                model, s.val, size, cfg.eval_batch_size, runtime
            )
        rows[label] = {
            "best_epoch": result.best_epoch,
            "best_cycle": result.best_cycle,
            "validation": result.best_metrics,
            "robustness": robust,
            "evaluate": {
                k: evaluate(model, d, cfg.eval_batch_size, runtime) for k, d in extra.items()
            },
            "checkpoint": str(ckpt.relative_to(run_dir)),
            "seconds": result.seconds,
        }
    rob_seconds = time.perf_counter() - t_rob

    analysis = run_dir / "analysis"
    if by_position:
        write_json(
            analysis / "robustness_positions.json",
            {"size": size, "dsc_by_position": {k: v.tolist() for k, v in by_position.items()}},
        )
        unoccluded = {
            k: float(rows[k]["validation"].get("dsc_mean", math.nan)) for k in by_position
        }
        save_position_maps(by_position, size, analysis / "robustness_positions.png", unoccluded)
    for k, keep in first.keeps.items():
        rows[k]["first_cycle_erased_fraction"] = float((keep == 0).float().mean())
    iou = save_iou(first.keeps, analysis / "iou.json")
    save_samples(s.train.images[:4], s.train.masks[:4], first, analysis / "samples.png")
    curves = {sp.key: read_curve(run_dir / "branches" / sp.key / "metrics.jsonl") for sp in specs}
    conv = convergence(curves) if cfg.cycles else None
    save_convergence_plot(
        read_curve(run_dir / "standard" / "metrics.jsonl"), curves, analysis / "convergence.png"
    )

    summary = {
        "name": config.name,
        "mode": mode,
        "device": str(device),
        "standard_key": key,
        "train_slices": len(train),
        "val_slices": len(val),
        "schedule": {
            "standard_epochs": cfg.standard_epochs,
            "cycles": cfg.cycles,
            "ada_epochs": cfg.ada_epochs,
        },
        "robustness_size": size,
        "evaluate": list(extra),
        "standard": rows.pop("standard"),
        "branches": {sp.key: {"attributor": sp.name, **rows[sp.key]} for sp in specs},
        "iou": iou,
        "convergence": conv,
        "seconds": {"robustness": rob_seconds, "total": time.perf_counter() - t_start},
    }
    write_json(run_dir / "summary.json", summary)
    text = format_summary(json.loads((run_dir / "summary.json").read_text()))
    atomic_write_text(run_dir / "summary.txt", text)
    print(text, end="", flush=True)
    print(f"report: {write_report(run_dir)}", flush=True)
    return run_dir
