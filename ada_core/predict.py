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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ada_core._geometry import plan_geometry, to_crops, to_volume
from ada_core.data import PreprocessConfig
from ada_core.errors import DataError, InputError, suggest

if TYPE_CHECKING:
    from ada_core.interfaces import SegModel
    from ada_core.registry import Registry

__all__ = ["Checkpoint", "load_model", "load_run_checkpoint", "predict_files", "predict_volume"]

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
        InputError: no such branch, seed or fold (the valid ones are listed).
    """
    from ada_core.runfolder import open_run, read_weights

    folder = open_run(run)
    job = _pick(folder.path, list(folder.summary.jobs), branch, seed, fold)
    path = folder.selected_checkpoint(job)  # always a checkpoint inside the job's own folder
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
    return Checkpoint(model, PreprocessConfig(**meta["preprocess"]), meta, path)


def load_model(run: str | Path, branch: str | None = None, seed: int | None = None, *,
               fold: str | None = None, device: str | torch.device = "cpu",
               registry: Registry | None = None) -> SegModel:  # fmt: skip
    """The network of a job's selected checkpoint, in eval mode (see
    :func:`load_run_checkpoint` for the arguments and errors)."""
    return load_run_checkpoint(run, branch, seed, fold=fold, device=device, registry=registry).model


@torch.inference_mode()
def predict_volume(
    model: SegModel, image: np.ndarray, spacing: Sequence[float], preprocess: PreprocessConfig,
    *, cord: np.ndarray | None = None, batch_size: int = 16,
) -> np.ndarray:  # fmt: skip
    """Grey-matter probability of every voxel of a canonical ``(X, Y, Z)`` volume.

    The volume is cut as in training (``preprocess``: spacing, crop size, normalisation);
    crops are centred on ``cord``'s centroid per slice when given, else on the image centre.
    Voxels outside every crop get probability 0.

    Args:
        model: the network (eval mode).
        image: ``(X, Y, Z)`` canonically (RAS+) oriented image.
        spacing: its voxel size in mm.
        preprocess: the preprocessing the model was trained with.
        cord: optional ``(X, Y, Z)`` spinal-cord mask centring the crops.
        batch_size: slices per forward pass.

    Returns:
        ``(X, Y, Z)`` float32 probabilities in [0, 1].
    """
    labels = [] if cord is None else [cord]
    geometry = plan_geometry(image.shape, spacing, preprocess, labels)
    crops = to_crops(image, geometry, preprocess.normalize)
    device = next(model.parameters()).device
    model.check_input_size(*geometry.size)
    probs = []
    for start in range(0, crops.shape[0], batch_size):
        x = crops[start : start + batch_size, None].to(device)
        probs.append(torch.sigmoid(model(x).float())[:, 0].cpu())
    # interpolation weights sum to 1 only up to rounding: keep probabilities in [0, 1]
    return np.clip(to_volume(torch.cat(probs), geometry), 0.0, 1.0).astype(np.float32)


def _stem(path: Path) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", path.name)


def _read(path: Path) -> tuple[Any, np.ndarray, tuple[float, float, float], Any]:
    import nibabel as nib

    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    try:
        img = nib.load(str(path))
        canon = nib.as_closest_canonical(img)
        data = np.asarray(canon.dataobj, dtype=np.float32)
    except Exception as e:  # nibabel raises many types for a damaged file
        raise InputError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e})") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: has NaN or infinite voxels; fix the file")
    zooms = tuple(float(z) for z in canon.header.get_zooms()[:3])
    return img, data, zooms, nib.io_orientation(img.affine)


def _write(path: Path, canonical: np.ndarray, source: Any, ornt: np.ndarray, dtype: type) -> Path:
    """Save ``canonical (X, Y, Z)`` on the grid and affine of the image ``source``."""
    import nibabel as nib
    from nibabel import orientations as o

    back = o.ornt_transform(o.axcodes2ornt("RAS"), ornt)  # canonical -> the file's axes
    data = o.apply_orientation(canonical, back).astype(dtype)
    out = nib.Nifti1Image(data, source.affine)
    hdr = source.header
    out.header.set_xyzt_units(*hdr.get_xyzt_units())
    for form in ("qform", "sform"):  # keep the codes (scanner, aligned) of the input
        affine, code = getattr(hdr, f"get_{form}")(coded=True)
        if affine is not None and code:
            getattr(out.header, f"set_{form}")(affine, code=int(code))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(path))
    return path


def predict_files(
    run: str | Path, inputs: Sequence[str | Path], output: str | Path, *,
    branch: str | None = None, seed: int | None = None, fold: str | None = None,
    probabilities: bool = False, cords: Sequence[str | Path] = (),
    device: str | torch.device = "cpu", registry: Registry | None = None,
) -> list[Path]:  # fmt: skip
    """Segment NIfTI files with a job's selected checkpoint; write masks on their own grids.

    For an input ``a.nii.gz`` it writes ``output/a_gmseg.nii.gz`` (uint8 0/1: probability >=
    0.5) and, with ``probabilities``, ``output/a_gmprob.nii.gz`` (float32), each with the
    input's shape and affine.

    Args:
        run: the run folder.
        inputs: NIfTI images (``.nii`` or ``.nii.gz``).
        output: folder for the results.
        branch, seed, fold: which job (see :func:`load_run_checkpoint`).
        probabilities: also write the probability maps.
        cords: optional spinal-cord masks, one per input, centring the crops as in training.
        device: where the network runs.
        registry: the component registry; None loads the installed plugins.

    Returns:
        The written files, in input order.

    Raises:
        InputError: an unreadable input, a cord mask of another shape, a wrong count of
            cord masks, or two inputs with the same name.
        DataError, InputError: see :func:`load_run_checkpoint`.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("no input volume given; pass one or more NIfTI files (--input a.nii.gz)")
    if cords and len(cords) != len(inputs):
        raise InputError(f"{len(cords)} cord masks for {len(inputs)} inputs; give one per input")
    stems = [_stem(p) for p in inputs]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise InputError(f"inputs share the names {dupes}; their results would overwrite each other")
    ckpt = load_run_checkpoint(run, branch, seed, fold=fold, device=device, registry=registry)
    meta = ckpt.meta
    log.info("predicting with %s (branch %s, seed %s)", ckpt.path, meta.get("label"), meta.get("seed"))
    output, written = Path(output), []
    for i, path in enumerate(inputs):
        img, data, zooms, ornt = _read(path)
        cord = None
        if cords:
            _, cord, _, _ = _read(Path(cords[i]))
            if cord.shape != data.shape:
                raise InputError(f"{cords[i]}: cord mask shape {cord.shape} differs from {path}'s {data.shape}")
            cord = (cord > 0.5).astype(np.float32)
        prob = predict_volume(ckpt.model, data, zooms, ckpt.preprocess, cord=cord)
        mask_path = _write(output / f"{stems[i]}_gmseg.nii.gz", prob >= 0.5, img, ornt, np.uint8)
        written.append(mask_path)
        log.info("%s -> %s (%d GM voxels)", path, mask_path, int((prob >= 0.5).sum()))
        if probabilities:
            written.append(_write(output / f"{stems[i]}_gmprob.nii.gz", prob, img, ornt, np.float32))
    return written
