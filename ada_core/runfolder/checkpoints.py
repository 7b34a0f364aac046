"""The torch files of a job folder: weights, the training state, keep masks, samples.

Each file has one shape, built and checked here: ``best.pt``/``average.pt``/``avg/epoch-e.pt``
hold :class:`Weights`; ``last.pt`` (with ``last.prev.pt``) the :class:`TrainingState` that
continues a phase exactly; ``keep.pt`` a cycle's keep masks; ``cycle1.pt`` the first cycle's
masks (and ADA images); ``samples.pt`` the report's :class:`Samples`. Every file is written
atomically and read with ``weights_only=True`` (:mod:`ada_core.runfolder._io`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ada_core.errors import DataError
from ada_core.runfolder import _io
from ada_core.runfolder.layout import JobPaths

__all__ = [
    "CheckpointWarning",
    "Samples",
    "TrainingState",
    "Weights",
    "read_cycle1",
    "read_keep",
    "read_samples",
    "read_training_state",
    "read_weights",
    "write_cycle1",
    "write_keep",
    "write_samples",
    "write_training_state",
    "write_weights",
]


class CheckpointWarning(UserWarning):
    """A checkpoint was unreadable and its previous version was used instead."""


def _need(path: Path, state: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise DataError(f"checkpoint {path} lacks {missing} (it has {sorted(state)}); it was "
                        "written by another version of ADA or changed outside it")  # fmt: skip


@dataclass
class Weights:
    """A network's weights and what rebuilds it (``meta``: model spec, preprocessing, label,
    seed, fold), with the epoch they come from (None for an average)."""

    model: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    cycle: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {"meta": self.meta, "model": self.model, "epoch": self.epoch, "cycle": self.cycle,
                "metrics": self.metrics, "epochs": self.epochs}  # fmt: skip


def write_weights(job: JobPaths, path: Path, weights: Weights) -> None:
    _io.write_torch(path, job.root, weights.state())


def read_weights(path: Path, device: torch.device | str = "cpu") -> Weights:
    """Weights written by :func:`write_weights`.

    Raises:
        RefusedFileError, DataError: see :func:`~ada_core.runfolder._io.read_torch`.
    """
    state = _io.read_torch(path, device)
    _need(path, state, ("model",))
    return Weights(state["model"], state.get("meta") or {}, state.get("epoch"),
                   state.get("cycle"), state.get("metrics") or {}, state.get("epochs") or [])  # fmt: skip


@dataclass
class TrainingState:
    """Everything a phase needs to continue exactly (``last.pt``)."""

    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    epoch: int
    best: dict[str, Any] | None
    seconds: float
    attributor: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("model", "optimizer", "rng", "epoch", "best", "seconds", "attributor")

    def state(self) -> dict[str, Any]:
        return {"meta": self.meta, "model": self.model, "optimizer": self.optimizer,
                "rng": self.rng, "epoch": self.epoch, "best": self.best,
                "seconds": self.seconds, "attributor": self.attributor}  # fmt: skip


def write_training_state(job: JobPaths, state: TrainingState) -> None:
    """``last.pt``, its previous version kept as ``last.prev.pt``."""
    _io.write_torch(job.last, job.root, state.state(), keep_previous=job.previous(job.last))


def _training_state(path: Path, device: torch.device | str) -> TrainingState:
    state = _io.read_torch(path, device)
    _need(path, state, TrainingState._KEYS)
    return TrainingState(**{k: state[k] for k in TrainingState._KEYS}, meta=state.get("meta") or {})


def read_training_state(path: Path, device: torch.device | str = "cpu", *,
                        job: JobPaths | None = None) -> TrainingState:  # fmt: skip
    """The training state in ``path``; with ``job`` (resuming ``job.last``), an unreadable
    file falls back to its previous version, which is then the only good copy.

    On fallback the damaged file is kept aside as ``last.damaged.pt`` (never deleted), so the
    next save does not demote it to ``last.prev.pt`` over the good copy; a warning
    (:class:`CheckpointWarning`) says what happened. A *refused* file (one that could run
    code) is never fallen back past.

    Raises:
        RefusedFileError: ``path`` could run code when loaded.
        DataError: unreadable, with no readable previous version (or no ``job``).
    """
    try:
        return _training_state(path, device)
    except _io.RefusedFileError:
        raise
    except DataError as e:
        prev = job.previous(path) if job is not None else None
        if prev is None or not prev.is_file():
            raise
        state = _training_state(prev, device)
        kept = ""
        if path.is_file():
            os.replace(path, job.damaged(path))
            kept = f"; the damaged file is kept as {job.damaged(path).name}"
        warnings.warn(
            f"{e}; using the previous checkpoint {prev.name} instead (the epochs after it are "
            f"trained again, with the same result){kept}",
            CheckpointWarning,
            stacklevel=2,
        )
        return state


def write_keep(job: JobPaths, cycle: int, keep: Tensor) -> None:
    """``keep.pt``: this cycle's keep masks ``(N, 1, H, W)`` (bool), read back on resume."""
    _io.write_torch(job.keep, job.root, {"cycle": int(cycle), "keep": keep.bool().cpu()})


def read_keep(job: JobPaths, cycle: int, device: torch.device | str) -> Tensor:
    """The keep masks of ``cycle`` as float32 on ``device``.

    Raises:
        DataError: the file is unreadable or holds another cycle's masks.
    """
    state = _io.read_torch(job.keep, device)
    _need(job.keep, state, ("cycle", "keep"))
    if int(state["cycle"]) != int(cycle):
        raise DataError(f"{job.keep} holds the masks of cycle {state['cycle']}, not of cycle "
                        f"{cycle}; the folder was changed outside ADA: train it again (--force)")  # fmt: skip
    return state["keep"].float()


def write_cycle1(job: JobPaths, keep: Tensor, ada_images: Tensor | None) -> None:
    """``cycle1.pt``: the first cycle's keep masks (the IoU analysis) and ADA images."""
    state: dict[str, Any] = {"keep": keep.bool().cpu()}
    if ada_images is not None:
        state["ada_images"] = ada_images.cpu()
    _io.write_torch(job.cycle1, job.root, state)


def read_cycle1(job: JobPaths) -> Tensor:
    """The first cycle's keep masks ``(N, 1, H, W)`` as float32 on the CPU."""
    state = _io.read_torch(job.cycle1)
    _need(job.cycle1, state, ("keep",))
    return state["keep"].float()


@dataclass
class Samples:
    """The first training images of a branch, for the report (Figure 3): each ``(n, 1, H, W)``.

    ``saliency`` is the first cycle's map, ``keep`` its mask, ``ada_images`` the erased copy.
    """

    images: Tensor
    masks: Tensor
    saliency: Tensor
    keep: Tensor
    ada_images: Tensor
    fill: float
    spacing_mm: Tensor

    _TENSORS = ("images", "masks", "saliency", "keep", "ada_images")


def write_samples(job: JobPaths, samples: Samples) -> None:
    state = {k: getattr(samples, k).cpu() for k in Samples._TENSORS}
    state.update(fill=float(samples.fill), spacing_mm=samples.spacing_mm.cpu())
    _io.write_torch(job.samples, job.root, state)


def read_samples(path: Path) -> Samples:
    """``samples.pt``, checked: every image tensor ``(n, 1, H, W)`` of one shape.

    Raises:
        DataError: missing keys, or tensors of different or wrong shapes.
    """
    state = _io.read_torch(path)
    _need(path, state, Samples._TENSORS)
    shapes = {k: tuple(state[k].shape) for k in Samples._TENSORS if isinstance(state[k], Tensor)}
    if len(shapes) < len(Samples._TENSORS) or len(set(shapes.values())) != 1 or \
            len(next(iter(shapes.values()))) != 4:
        raise DataError(f"{path}: expected tensors {list(Samples._TENSORS)} of one (n, 1, H, W) "
                        f"shape, found {shapes}")  # fmt: skip
    n = next(iter(shapes.values()))[0]
    spacing = state.get("spacing_mm")
    if not isinstance(spacing, Tensor) or tuple(spacing.shape) != (n, 2):
        spacing = torch.ones(n, 2)
    return Samples(*(state[k] for k in Samples._TENSORS), float(state.get("fill", 0.0)), spacing)
