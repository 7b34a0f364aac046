"""Inference: a branch's selected checkpoint segments NIfTI volumes (``ada predict``).

A checkpoint carries ``meta`` (the model spec, the preprocessing, label, seed, fold), so
:func:`load_model` rebuilds the network from the run folder alone, through the registry.
:func:`predict_volume` cuts a canonical volume into the model's crops exactly as training
did (:mod:`ada_core._geometry`), predicts, and puts the probabilities back on the volume's
own grid; :func:`predict_files` reads and writes NIfTI with nibabel, undoing the
reorientation too, so each mask has its input's shape and affine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ada_core._allocator import keep_freed_memory
from ada_core._geometry import plan_geometry, to_crops, to_volume
from ada_core._predict_io import check_cases, plan_cases, read_case, resolve_device, write_like
from ada_core._slicing import normalise
from ada_core._sliding import locate as find_region
from ada_core._sliding import sliding_window
from ada_core.data import PreprocessConfig
from ada_core._standardise import map_to_scale, standardise_crops
from ada_core.errors import DataError, InputError, suggest
from ada_core.fieldtags import ALLOW_UNUSED

if TYPE_CHECKING:
    from ada_core.interfaces import SegModel
    from ada_core.registry import Registry

__all__ = ["Checkpoint", "Locate", "load_model", "load_run_checkpoint", "predict_files",
           "predict_volume"]

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A rebuilt network and where it came from.

    Attributes:
        model: the network in eval mode, weights of the job's selected checkpoint.
        preprocess: the preprocessing it was trained with.
        meta: the checkpoint's ``meta`` (ada_version, model, preprocess, label, seed, fold).
        path: the checkpoint file.
    """

    model: SegModel
    preprocess: PreprocessConfig
    meta: dict[str, Any]
    path: Path


def _pick(run: Path, jobs: list[Any], branch: str | None, seed: int | None,
          fold: str | None) -> Any:  # fmt: skip
    labels = list(dict.fromkeys(j.label for j in jobs))
    if branch is None:
        trained = [b for b in labels if b != "standard"]
        if len(trained) > 1:
            raise InputError(
                f"{run}: the run has branches {trained}; choose one with --branch (branch=...), "
                "or 'standard' for the standard phase"
            )
        branch = trained[0] if trained else "standard"
    if branch not in labels:
        raise InputError(f"{run}: no branch {branch!r}. {suggest(branch, labels)}")
    mine = [j for j in jobs if j.label == branch]
    if fold is not None:
        folds = sorted({j.fold for j in mine})
        mine = [j for j in mine if j.fold == fold]
        if not mine:
            raise InputError(f"{run}: no fold {fold!r}. {suggest(fold, folds)}")
    seeds = sorted({j.seed for j in mine})
    if seed is not None and seed not in seeds:
        raise InputError(f"{run}: branch {branch!r} has no seed {seed}; its seeds are {seeds}")
    chosen = seed if seed is not None else seeds[0]
    return next(j for j in mine if j.seed == chosen)


def load_run_checkpoint(
    run: str | Path, branch: str | None = None, seed: int | None = None, *,
    fold: str | None = None, device: str | torch.device = "cpu", registry: Registry | None = None,
) -> Checkpoint:  # fmt: skip
    """The selected checkpoint of one job of an aggregated run folder, rebuilt.

    Args:
        run: the run folder (holding ``summary.json``).
        branch: the branch label, or ``"standard"``; None: the run's only branch.
        seed: the replicate's seed; None: the smallest.
        fold: the fold (runs with folds); None: the first with that seed.
        device: where the weights go.
        registry: the component registry; None loads the installed plugins.

    Raises:
        DataError: not a run folder, the job has not finished, or its checkpoint is
            unreadable or carries no ``meta``.
        InputError: no such branch, seed or fold (the valid ones are listed), or a device
            this machine does not have.
    """
    from ada_core.runfolder import open_run, read_weights

    device = resolve_device(device)
    folder = open_run(run)
    job = _pick(folder.path, list(folder.summary.jobs), branch, seed, fold)
    path = folder.selected_checkpoint(job)  # one of the job's own checkpoint names
    inside = folder.paths(job).folder.resolve()
    if not path.resolve().is_relative_to(inside):
        raise DataError(f"{path}: the selected checkpoint is a link to {path.resolve()}, outside "
                        f"its job folder {inside}; ADA loads only a job's own checkpoints. "
                        "The file was changed outside ADA: train the job again (--force)")  # fmt: skip
    weights = read_weights(path, device)
    meta = weights.meta
    if not meta or "model" not in meta or "preprocess" not in meta:
        raise DataError(
            f"{path}: the checkpoint carries no model spec (meta); it was written by an ADA "
            "older than 0.1 and cannot be rebuilt without its config: train it again"
        )
    if registry is None:
        from ada_core.plugins import load_plugins

        registry = load_plugins()
    spec = meta["model"]
    model = registry.models.build(spec["name"], spec.get("params", {}), where="model.params")
    model.load_state_dict(weights.model)
    model.to(device).eval()
    # meta lists every preprocessing value, the inactive ones too (ADA's own record)
    pre = PreprocessConfig.model_validate(meta["preprocess"], context=ALLOW_UNUSED)
    if pre.standardise == "histogram" and not meta.get("standard_scale"):
        raise DataError(f"{path}: the model was trained with histogram standardisation but its "
                        "checkpoint carries no standard_scale; train it again with this ADA")  # fmt: skip
    return Checkpoint(model, pre, meta, path)


def load_model(run: str | Path, branch: str | None = None, seed: int | None = None, *,
               fold: str | None = None, device: str | torch.device = "cpu",
               registry: Registry | None = None) -> SegModel:  # fmt: skip
    """The network of a job's selected checkpoint, in eval mode (see
    :func:`load_run_checkpoint` for the arguments and errors)."""
    return load_run_checkpoint(run, branch, seed, fold=fold, device=device, registry=registry).model


#: How a volume without a cord mask is cut: ``located`` (default) finds the grey matter with
#: a sliding window over each whole slice, then crops around it as training did; ``sliding``
#: keeps the sliding window's own probabilities (nnU-Net's inference); ``centre`` centres the
#: crops on the image centre (ADA before 0.2).
Locate = Literal["located", "sliding", "centre"]


@torch.inference_mode()
def predict_volume(
    model: SegModel, image: np.ndarray, spacing: Sequence[float], preprocess: PreprocessConfig,
    *, cord: np.ndarray | None = None, locate: Locate = "located", overlap: float = 0.5,
    batch_size: int = 16, standard_scale: Sequence[float] | None = None,
) -> np.ndarray:  # fmt: skip
    """Grey-matter probability of every voxel of a canonical ``(X, Y, Z)`` volume.

    The volume is cut as in training (``preprocess``: spacing, crop size, normalisation). With
    ``cord`` the crops are centred on its centroid per slice, as training centres them; without
    it ``locate`` says how the grey matter is found (see :data:`Locate`). Voxels outside every
    crop get probability 0.

    Args:
        model: the network (eval mode).
        image: ``(X, Y, Z)`` canonically (RAS+) oriented image.
        spacing: its voxel size in mm.
        preprocess: the preprocessing the model was trained with.
        cord: optional ``(X, Y, Z)`` spinal-cord mask centring the crops.
        locate: without ``cord``: ``located``, ``sliding`` or ``centre``.
        overlap: the fraction of a tile its neighbour shares in the sliding window.
        batch_size: slices (tiles) per forward pass.
        standard_scale: the checkpoint's ``meta["standard_scale"]`` (needed with
            ``preprocess.standardise = "histogram"``).

    Returns:
        ``(X, Y, Z)`` float32 probabilities in [0, 1].
    """
    prepare = _preparation(preprocess, standard_scale)
    device = next(model.parameters()).device

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(x.to(device)).float())[:, 0].cpu()

    if locate not in ("located", "sliding", "centre"):
        raise InputError(f"locate must be 'located', 'sliding' or 'centre', got {locate!r}")
    labels = [] if cord is None else [cord]
    geometry = plan_geometry(image.shape, spacing, preprocess, labels)
    model.check_input_size(*geometry.size)
    if cord is None and locate != "centre":
        prob = sliding_window(run, image, geometry, prepare, overlap=overlap,
                              batch_size=batch_size)  # fmt: skip
        found = find_region(prob)
        if locate == "sliding" or found is None:
            if found is None:
                log.warning("no grey matter found by the sliding window; the mask is empty")
            return prob
        geometry = plan_geometry(image.shape, spacing, preprocess, [found])
    raw = to_crops(image, geometry, "none")
    crops = prepare(raw) if callable(prepare) else normalise(raw, prepare)
    probs = [run(crops[i : i + batch_size, None]) for i in range(0, crops.shape[0], batch_size)]
    # interpolation weights sum to 1 only up to rounding: keep probabilities in [0, 1]
    return np.clip(to_volume(torch.cat(probs), geometry), 0.0, 1.0).astype(np.float32)


def _preparation(preprocess: PreprocessConfig, scale: Sequence[float] | None
                 ) -> str | Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """What turns raw crops into the model's input: the ``normalize`` name (per crop), or a
    function of a volume's ``(Z, h, w)`` stack of crops (its region) as training
    standardised it (:func:`ada_core.data.standardise_crops`, then the standard scale)."""
    if preprocess.standardise == "none":
        return preprocess.normalize
    if preprocess.standardise == "histogram" and not scale:
        raise InputError("the model was trained with histogram standardisation: pass its "
                         "checkpoint's standard_scale (meta['standard_scale'])")  # fmt: skip
    target = None if scale is None else torch.tensor(list(scale), dtype=torch.float64)

    def prepare(crops: torch.Tensor) -> torch.Tensor:
        z, own = standardise_crops(crops, preprocess)
        return z if own is None else map_to_scale(z, own[0], target)

    return prepare


def predict_files(
    run: str | Path, inputs: Sequence[str | Path], output: str | Path, *,
    branch: str | None = None, seed: int | None = None, fold: str | None = None,
    probabilities: bool = False, cords: Sequence[str | Path] = (), locate: Locate = "located",
    device: str | torch.device = "cpu", registry: Registry | None = None,
) -> list[Path]:  # fmt: skip
    """Segment NIfTI files with a job's selected checkpoint; write masks on their own grids.

    As nnU-Net: ``inputs`` are files or folders (every ``.nii`` / ``.nii.gz`` in one); a case
    ``a_0000.nii.gz`` or ``a.nii.gz`` gives ``output/a.nii.gz`` (uint8 0/1: probability >=
    0.5) and, with ``probabilities``, ``output/a_gmprob.nii.gz`` (float32), each with the
    input's shape and affine. Every input is opened and checked, and the device too, before
    the model is loaded and before anything is written.

    Args:
        run: the run folder.
        inputs: NIfTI images or folders of them.
        output: folder for the results.
        branch, seed, fold: which job (see :func:`load_run_checkpoint`).
        probabilities: also write the probability maps.
        cords: spinal-cord masks, one per case in order, or one folder of ``<case>.nii.gz``
            (or ``<case>_seg.nii.gz``), centring the crops as in training.
        locate: without cord masks, how the grey matter is found (:data:`Locate`).
        device: where the network runs.
        registry: the component registry; None loads the installed plugins.

    Returns:
        The written files, in case order.

    Raises:
        InputError: an unreadable input or cord mask, one of another shape, a wrong count of
            cord masks, two inputs of one case, a result that would overwrite an input, or a
            device this machine does not have.
        DataError, InputError: see :func:`load_run_checkpoint`.
    """
    cases = plan_cases(inputs, output, cords=[Path(c) for c in cords], probabilities=probabilities)
    resolve_device(device)
    check_cases(cases)  # a typo in the 10th file fails before the first mask is written
    keep_freed_memory()
    ckpt = load_run_checkpoint(run, branch, seed, fold=fold, device=device, registry=registry)
    meta = ckpt.meta
    log.info("predicting %d case(s) with %s (branch %s, seed %s)", len(cases), ckpt.path,
             meta.get("label"), meta.get("seed"))  # fmt: skip
    written = []
    for case in cases:
        scan, cord = read_case(case)
        prob = predict_volume(ckpt.model, scan.data, scan.zooms, ckpt.preprocess, cord=cord,
                              locate=locate, standard_scale=meta.get("standard_scale"))  # fmt: skip
        written.append(write_like(case.mask_out, prob >= 0.5, scan, np.uint8))
        log.info("%s -> %s (%d GM voxels)", case.image, case.mask_out, int((prob >= 0.5).sum()))
        if case.prob_out is not None:
            written.append(write_like(case.prob_out, prob, scan, np.float32))
    return written
