"""Algorithm 1: the standard phase and one ADA branch, each a plain loop over epochs.

A phase folder holds ``metrics.jsonl`` (one line per epoch), ``best.pt`` (weights of the
best-validation epoch), ``last.pt`` (everything needed to resume after the last complete epoch)
and, for the standard phase, ``final.pt``: the state every branch starts from.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ada_core.augment import Augmenter
from ada_core.config import ComponentSpec, ExperimentConfig
from ada_core.data import SliceSet
from ada_core.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    tensor_digest,
    write_json,
)
from ada_core.engine.loop import Runtime, evaluate, train_epoch
from ada_core.engine.losses import make_loss
from ada_core.engine.runlog import MetricsLog, Progress
from ada_core.interfaces import Attributor, MaskBuilder, SegModel
from ada_core.registry import Registry

__all__ = ["PhaseResult", "Session", "compute_keep", "run_branch", "run_standard"]

#: Validation metric that picks the best epoch (higher is better).
SELECT = "dsc_mean"


@dataclass
class Session:
    """What every phase of one run shares: config, components, device data."""

    config: ExperimentConfig
    registry: Registry
    runtime: Runtime
    train: SliceSet
    val: SliceSet
    quiet: bool = False

    def new_model(self) -> SegModel:
        torch.manual_seed(self.config.train.seed)  # same initial weights for the same seed
        model = self.registry.build("model", self.config.model, "model.params")
        model.check_input_size(*self.train.images.shape[-2:])
        model = model.to(self.runtime.device)
        if self.runtime.channels_last and self.runtime.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def new_optimizer(self, model: SegModel) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.config.train.lr)

    def new_generators(self) -> dict[str, torch.Generator]:
        """One generator per purpose on the device, seeded from ``train.seed``."""
        seed = self.config.train.seed
        dev = self.runtime.device
        return {
            name: torch.Generator(device=dev).manual_seed(seed * 1000 + i)
            for i, name in enumerate(("shuffle", "augment"), start=1)
        }


@dataclass
class PhaseResult:
    """Where a phase ended: its best epoch and metrics, and its wall time."""

    best_epoch: int
    best_cycle: int
    best_metrics: dict[str, float]
    seconds: float
    epochs: int
    extra: dict[str, Any] = field(default_factory=dict)


def _score(metrics: dict[str, float]) -> float:
    value = metrics.get(SELECT)
    return float("nan") if value is None else float(value)


def _better(metrics: dict[str, float], best: dict[str, float] | None) -> bool:
    value = metrics.get(SELECT, float("nan"))
    if best is None:
        return True
    old = best.get(SELECT, float("nan"))
    if value != value:  # a NaN score never replaces a recorded best
        return False
    return old != old or value > old


def _state(model, optimizer, gens, runtime, **extra) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": capture_rng(gens, runtime.device),
        **extra,
    }


def _save_best(folder: Path, model, epoch: int, cycle: int, metrics: dict[str, float]) -> None:
    save_checkpoint(
        folder / "best.pt",
        {"model": model.state_dict(), "epoch": epoch, "cycle": cycle, "metrics": metrics},
    )


def _load_state(path: Path, model, optimizer, gens, runtime) -> dict[str, Any]:
    state = load_checkpoint(path, runtime.device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"], gens, runtime.device)
    return state


def _epoch(
    s: Session, model, opt, gens, augmenter, images, masks, augment_mask
) -> tuple[float, dict, float, float]:
    cfg = s.config.train
    t0 = time.perf_counter()
    loss = train_epoch(
        model,
        opt,
        images,
        masks,
        loss_fn=make_loss(cfg.loss),
        batch_size=cfg.batch_size,
        shuffle=gens["shuffle"],
        augmenter=augmenter,
        runtime=s.runtime,
        augment_mask=augment_mask,
    )
    loss_value = float(loss)  # host-device sync point: once per epoch, for logging
    train_seconds = time.perf_counter() - t0
    metrics = evaluate(model, s.val, cfg.eval_batch_size, s.runtime)
    return loss_value, metrics, train_seconds, time.perf_counter() - t0


def run_standard(s: Session, folder: Path, resume: bool) -> PhaseResult:
    """Train ``standard_epochs`` on conventional data; write best.pt, last.pt and final.pt."""
    cfg = s.config.train
    model = s.new_model()
    opt = s.new_optimizer(model)
    gens = s.new_generators()
    start, best, best_epoch, elapsed = 0, None, 0, 0.0
    if resume and (folder / "last.pt").is_file():
        st = _load_state(folder / "last.pt", model, opt, gens, s.runtime)
        start, best, best_epoch, elapsed = st["epoch"], st["best"], st["best_epoch"], st["seconds"]
    log = MetricsLog(folder / "metrics.jsonl", keep=start)
    augmenter = Augmenter(s.config.augment, gens["augment"])
    bar = Progress(cfg.standard_epochs, "standard", s.quiet, initial=start)
    if cfg.standard_epochs == 0:  # the untrained model is the standard-phase result
        best = evaluate(model, s.val, cfg.eval_batch_size, s.runtime)
        _save_best(folder, model, 0, 0, best)
    for epoch in range(start + 1, cfg.standard_epochs + 1):
        loss, metrics, train_s, total_s = _epoch(
            s, model, opt, gens, augmenter, s.train.images, s.train.masks, None
        )
        elapsed += total_s
        log.write(
            {
                "phase": "standard",
                "branch": None,
                "cycle": 0,
                "epoch": epoch,
                "loss": loss,
                "metrics": metrics,
                "seconds": total_s,
                "images_per_s": len(s.train) / train_s,
            }
        )
        if _better(metrics, best):
            best, best_epoch = metrics, epoch
            _save_best(folder, model, epoch, 0, metrics)
        save_checkpoint(
            folder / "last.pt",
            _state(
                model,
                opt,
                gens,
                s.runtime,
                epoch=epoch,
                best=best,
                best_epoch=best_epoch,
                seconds=elapsed,
            ),
        )
        bar.update(loss=loss, dsc=_score(metrics))
    bar.close()
    save_checkpoint(
        folder / "final.pt", _state(model, opt, gens, s.runtime, epoch=cfg.standard_epochs)
    )
    bar.note(f"done: best val DSC {_score(best):.2f} at epoch {best_epoch}, {elapsed:.1f} s")
    return PhaseResult(best_epoch, 0, best, elapsed, cfg.standard_epochs)


def compute_keep(
    attributor: Attributor, builder: MaskBuilder, model: SegModel, data: SliceSet, batch_size: int
) -> Tensor:
    """Keep masks ``(N, 1, H, W)`` float32 of every image of ``data`` for the current model.

    Attribution may draw random numbers; the global RNG is restored afterwards so that the
    training that follows sees the same random stream in every branch.
    """
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(data.images.device) if data.images.is_cuda else None
    keeps = []
    for start in range(0, len(data), batch_size):
        x, y = data.images[start : start + batch_size], data.masks[start : start + batch_size]
        keeps.append(builder.build(attributor.attribute(model, x, y), y))
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, data.images.device)
    return torch.cat(keeps)


def run_branch(
    s: Session,
    spec: ComponentSpec,
    folder: Path,
    standard_final: Path,
    first_keep: Tensor | None,
    first_counters: Counter[str] | None,
    resume: bool,
    attributor: Attributor | None = None,
) -> PhaseResult:
    """One branch: ``cycles`` x (attribute, build keep masks, ``ada_epochs`` on conv + ADA).

    Starts from the standard phase's final weights, optimizer state and random state. The
    ``none`` control trains the same number of epochs on conventional data only.

    Args:
        s: the session.
        spec: the attributor (``name == "none"`` for the control); ``spec.key`` labels it.
        folder: the branch folder.
        standard_final: the standard phase's ``final.pt``.
        first_keep: precomputed first-cycle keep masks (same model state), or None.
        first_counters: the counters of that precomputation.
        resume: continue from ``last.pt`` when present.
        attributor: the instance to use (built from ``spec`` when None).
    """
    cfg = s.config.train
    label = spec.key
    model = s.new_model()
    opt = s.new_optimizer(model)
    gens = s.new_generators()
    _load_state(standard_final, model, opt, gens, s.runtime)
    resuming = resume and (folder / "last.pt").is_file()
    if not resuming:  # a resumed branch keeps the record of where it really started
        write_json(
            folder / "start.json",
            {
                "from": str(standard_final),
                "model": tensor_digest(model.state_dict()),
                "optimizer": tensor_digest(opt.state_dict()),
                "rng": tensor_digest(capture_rng(gens, s.runtime.device)),
            },
        )
    if attributor is None and spec.name != "none":
        attributor = s.registry.build("attributor", spec, f"attributors[{label}].params")
    builder: MaskBuilder = s.registry.build("mask", s.config.mask, "mask.params")
    done, best, best_epoch, best_cycle, elapsed = 0, None, 0, 0, 0.0
    if resuming:
        st = _load_state(folder / "last.pt", model, opt, gens, s.runtime)
        done, best, best_epoch, best_cycle, elapsed = (
            st["epoch"],
            st["best"],
            st["best_epoch"],
            st["best_cycle"],
            st["seconds"],
        )
        if attributor is not None:
            attributor.load_state_dict(st.get("attributor", {}))
    log = MetricsLog(folder / "metrics.jsonl", keep=done)
    augmenter = Augmenter(s.config.augment, gens["augment"])
    total = cfg.cycles * cfg.ada_epochs
    bar = Progress(total, f"branch {label}", s.quiet, initial=done)
    n = len(s.train)
    for cycle in range(1, cfg.cycles + 1):
        first_epoch = (cycle - 1) * cfg.ada_epochs + 1
        if done >= cycle * cfg.ada_epochs:
            continue
        t0 = time.perf_counter()
        counters: Counter[str] = Counter()
        images, masks, augment_mask = s.train.images, s.train.masks, None
        if attributor is None and cfg.control_steps == "matched":
            # As many optimiser steps as an ADA branch, so extra steps cannot pass for ADA.
            images, masks = images.repeat(2, 1, 1, 1), masks.repeat(2, 1, 1, 1)
        if attributor is not None:
            if done >= first_epoch:  # resumed inside this cycle: its masks are on disk
                keep = load_checkpoint(folder / "keep.pt", s.runtime.device)["keep"].float()
            elif cycle == 1 and first_keep is not None:
                keep = first_keep
                counters.update(first_counters or {})
            else:
                keep = compute_keep(attributor, builder, model, s.train, cfg.eval_batch_size)
            if done < first_epoch:
                save_checkpoint(folder / "keep.pt", {"cycle": cycle, "keep": keep.bool().cpu()})
            counters.update(attributor.counters)
            counters.update(builder.counters)
            attributor.counters.clear()
            builder.counters.clear()
            # ADA images are made from the original (un-augmented) training images.
            ada = builder.apply(s.train.images, keep)
            if cycle == 1 and done < first_epoch:
                first = {"keep": keep.bool().cpu()}
                if cfg.save_ada_images:
                    first["ada_images"] = ada.cpu()
                save_checkpoint(folder / "cycle1.pt", first)
            images = torch.cat([s.train.images, ada])
            masks = torch.cat([s.train.masks, s.train.masks])
            augment_mask = torch.cat(
                [
                    torch.ones(n, dtype=torch.bool, device=images.device),
                    torch.full(
                        (n,), cfg.augment_ada_images, dtype=torch.bool, device=images.device
                    ),
                ]
            )
        prep_s = time.perf_counter() - t0
        elapsed += prep_s
        for epoch in range(max(first_epoch, done + 1), cycle * cfg.ada_epochs + 1):
            loss, metrics, train_s, total_s = _epoch(
                s, model, opt, gens, augmenter, images, masks, augment_mask
            )
            elapsed += total_s
            log.write(
                {
                    "phase": "ada" if attributor is not None else "control",
                    "branch": label,
                    "cycle": cycle,
                    "epoch": epoch,
                    "loss": loss,
                    "metrics": metrics,
                    "seconds": total_s + (prep_s if epoch == first_epoch else 0.0),
                    "images_per_s": images.shape[0] / train_s,
                    "train_images": int(images.shape[0]),
                    "counters": dict(counters) if epoch == first_epoch else {},
                }
            )
            if _better(metrics, best):
                best, best_epoch, best_cycle = metrics, epoch, cycle
                _save_best(folder, model, epoch, cycle, metrics)
            save_checkpoint(
                folder / "last.pt",
                _state(
                    model,
                    opt,
                    gens,
                    s.runtime,
                    epoch=epoch,
                    best=best,
                    best_epoch=best_epoch,
                    best_cycle=best_cycle,
                    seconds=elapsed,
                    attributor={} if attributor is None else attributor.state_dict(),
                ),
            )
            bar.update(cycle=cycle, loss=loss, dsc=_score(metrics))
        if s.quiet:
            bar.note(
                f"cycle {cycle}/{cfg.cycles} done, val DSC {_score(metrics):.2f}, {elapsed:.1f} s"
            )
    bar.close()
    if best is None:  # cycles == 0: the branch is the standard phase's final model
        best = evaluate(model, s.val, cfg.eval_batch_size, s.runtime)
        _save_best(folder, model, 0, 0, best)
    bar.note(
        f"done: best val DSC {_score(best):.2f} at epoch {best_epoch} (cycle {best_cycle}), "
        f"{elapsed:.1f} s"
    )
    return PhaseResult(best_epoch, best_cycle, best, elapsed, total)
