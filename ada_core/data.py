"""Shared preprocessing: volumes -> 2-D slice tensors, and the slice cache.

Every dataset plugin gets the same pipeline (:func:`preprocess_volume`): take axial slices of a
canonically oriented volume, show them in display orientation (anterior up, the patient's left
on the left), resample in-plane to ``spacing`` (image linear, mask linear then thresholded at
0.5 so labels never bleed), crop ``size`` around the cord / grey matter / image centre (padding
where the image is smaller), normalise each slice, optionally drop slices without grey matter.
:func:`load_slices` runs it over a data set with an on-disk cache and a per-subject error policy;
:mod:`ada_core.splits` splits by person, never by slice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from ada_core._slicing import crop_centres, display, resample_crop
from ada_core._standardise import DEFAULT_LANDMARKS, concat_landmarks, standardise_crops
from ada_core.errors import DataError
from ada_core.fieldtags import Settings, affects, used_when

if TYPE_CHECKING:
    from ada_core.interfaces import SegDataset, Volume

__all__ = [
    "DataWarning",
    "PreprocessConfig",
    "SliceSet",
    "load_slices",
    "preprocess_volume",
]

log = logging.getLogger(__name__)

#: Bump when preprocessing changes output for the same inputs: it invalidates every cache.
PREPROCESS_VERSION = 2


class DataWarning(UserWarning):
    """Subjects skipped by ``on_error = "skip"`` or listed but unlabelled."""


@dataclass
class SliceSet:
    """2-D axial slices with their provenance; what every engine trains and evaluates on.

    Attributes:
        images: ``(N, 1, H, W)`` float32, normalised.
        masks: ``(N, 1, H, W)`` float32 grey-matter masks in {0, 1}.
        spacing: ``(N, 2)`` float32 pixel size in mm (rows, columns).
        slice_index: ``(N,)`` int64 index of the slice in its volume.
        subject: subject id of each slice.
        site: acquisition site of each slice.
        group: split key of each slice (sessions and raters of one person share it).
        notes: what loading reported (skipped and unlabelled subjects), for the run's log.
        landmarks: ``(N, L)`` float64 histogram landmarks of each slice's volume (its region
            z-score percentiles), only with ``standardise = "histogram"``: the images are then
            region z-scored and wait for their fold's standard scale
            (:func:`ada_core._standardise.apply_scale`).
    """

    images: Tensor
    masks: Tensor
    spacing: Tensor
    slice_index: Tensor
    subject: list[str]
    site: list[str]
    group: list[str]
    notes: list[str] = field(default_factory=list)
    landmarks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> SliceSet:
        """The same slices with tensors on ``device`` (metadata lists are shared)."""
        return SliceSet(
            self.images.to(device),
            self.masks.to(device),
            self.spacing.to(device),
            self.slice_index.to(device),
            self.subject,
            self.site,
            self.group,
            self.notes,
            None if self.landmarks is None else self.landmarks.to(device),
        )

    def subset(self, index: Sequence[int] | Tensor) -> SliceSet:
        """The slices at ``index``, in that order."""
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        rows = idx.tolist()
        dev = self.images.device
        return SliceSet(
            self.images[idx.to(dev)],
            self.masks[idx.to(dev)],
            self.spacing[idx.to(self.spacing.device)],
            self.slice_index[idx.to(self.slice_index.device)],
            [self.subject[i] for i in rows],
            [self.site[i] for i in rows],
            [self.group[i] for i in rows],
            list(self.notes),
            None if self.landmarks is None else self.landmarks[idx.to(self.landmarks.device)],
        )

    @staticmethod
    def concat(parts: Sequence[SliceSet]) -> SliceSet:
        """Slices of ``parts`` one after the other; all must share the image size."""
        if not parts:
            raise DataError("SliceSet.concat: nothing to concatenate (no slices were produced)")
        sizes = {tuple(p.images.shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise DataError(f"SliceSet.concat: parts have different image sizes {sorted(sizes)}")
        return SliceSet(
            torch.cat([p.images for p in parts]),
            torch.cat([p.masks for p in parts]),
            torch.cat([p.spacing for p in parts]),
            torch.cat([p.slice_index for p in parts]),
            [s for p in parts for s in p.subject],
            [s for p in parts for s in p.site],
            [g for p in parts for g in p.group],
            [n for p in parts for n in p.notes],
            concat_landmarks([p.landmarks for p in parts]),
        )


class PreprocessConfig(Settings):
    """How volumes become slices (defaults from the SCGM literature: 0.25 mm, 200 x 200)."""

    spacing: float = Field(0.25, gt=0, description="Target in-plane voxel size in mm.")
    size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = Field(
        (200, 200), description="Crop (height, width) in pixels."
    )
    normalize: Literal["zscore", "minmax", "none"] = Field(
        "zscore", description="Per-slice intensity normalisation (over the cropped slice). "
        "Only without `standardise`: a per-slice normalisation after it would undo it (a "
        "z-score per slice is the same whatever per-volume affine map came before).",
        json_schema_extra=used_when("standardise", "none"),
    )
    standardise: Literal["none", "zscore_cord", "histogram"] = Field(
        "none", description="Per-volume intensity standardisation instead of `normalize`, with "
        "statistics over the volume's cord-centred crops (all slices; `ada predict` takes them "
        "over the crops around the located grey matter): 'zscore_cord' z-scores the volume; "
        "'histogram' maps it piecewise-linearly onto a standard scale of percentile landmarks "
        "learned per fold on its training persons only (Nyul-Udupa; stored in the checkpoint). "
        "'none': `normalize` per slice."
    )
    histogram_landmarks: tuple[float, ...] = Field(
        DEFAULT_LANDMARKS, description="Percentiles (increasing, in [0, 100], at least two) "
        "whose values are the landmarks of histogram standardisation.",
        json_schema_extra=used_when("standardise", "histogram"),
    )
    drop_empty: bool = Field(True, description="Drop slices without grey matter.")
    cache: bool = Field(
        True, description="Cache preprocessed slices on disk (needs a cache_dir).",
        json_schema_extra=affects("none"),
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="A subject that fails to load: 'raise' stops with its error; 'skip' leaves "
        "it out and reports every skipped subject with its reason (a DataWarning and "
        "SliceSet.notes).",
        json_schema_extra=affects("none"),
    )

    @field_validator("histogram_landmarks")
    @classmethod
    def _landmarks(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 2 or any(not 0 <= p <= 100 for p in v) or any(
            b <= a for a, b in zip(v, v[1:], strict=False)
        ):
            raise ValueError(f"histogram_landmarks must be at least two increasing percentiles "
                             f"in [0, 100], e.g. [1, 50, 99]; got {list(v)}")  # fmt: skip
        return v

    def cache_key(self) -> dict[str, object]:
        """The settings that change the slices (not ``cache`` nor ``on_error``); without
        ``standardise`` the key is the one of ADA before it (caches stay valid)."""
        if self.standardise == "none":
            return self.model_dump(exclude={"cache", "on_error", "standardise",
                                            "histogram_landmarks"})  # fmt: skip
        return self.model_dump(exclude={"cache", "on_error", "normalize"})


# --------------------------------------------------------------------------- preprocessing


def _check_volume(volume: Volume) -> str:
    where = volume.source or f"subject {volume.subject.id!r}"
    img = volume.image
    if not isinstance(img, np.ndarray) or img.ndim != 3 or min(img.shape) == 0:
        got = getattr(img, "shape", type(img).__name__)
        raise DataError(f"{where}: image must be a non-empty 3-D array (X, Y, Z), got {got}")
    bad = int(np.size(img) - np.count_nonzero(np.isfinite(img)))
    if bad:
        raise DataError(f"{where}: image has {bad} NaN or infinite voxels; fix or mask the file")
    sp = tuple(float(s) for s in volume.spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise DataError(f"{where}: spacing must be 3 positive numbers in mm, got {volume.spacing}")
    for label, arr in (("mask", volume.mask), ("cord", volume.cord)):
        if arr is None:
            continue
        if arr.shape != img.shape:
            raise DataError(
                f"{where}: {label} shape {arr.shape} differs from image shape {img.shape}"
            )
        if not np.isin(arr, (0, 1)).all():
            found = np.unique(arr)[:8].tolist()
            raise DataError(f"{where}: {label} must be binary 0/1, found values {found}")
    return where


def preprocess_volume(volume: Volume, config: PreprocessConfig) -> SliceSet:
    """Turn one canonically oriented volume into normalised, cropped 2-D slices (pure).

    Args:
        volume: image ``(X, Y, Z)`` (axial slices along Z), optional GM ``mask`` and ``cord``
            of the same shape in {0, 1}, ``spacing`` in mm.
        config: target spacing, crop size, normalisation, empty-slice policy.

    Returns:
        A :class:`SliceSet` of ``(N, 1, H, W)`` slices in display orientation (rows from
        anterior to posterior, columns from the patient's left to right); ``spacing`` is the
        actual pixel size after resampling. An unlabelled volume gives all-zero masks and
        keeps every slice.

    Raises:
        DataError: naming ``volume.source`` on a malformed image, mask or spacing.
    """
    where = _check_volume(volume)
    sx, sy, _ = (float(s) for s in volume.spacing)
    image = display(volume.image.astype(np.float32, copy=False))
    z, h, w = image.shape
    t = config.spacing
    same = abs(sx - t) <= 1e-6 * t and abs(sy - t) <= 1e-6 * t
    out_hw = (h, w) if same else (max(1, round(h * sy / t)), max(1, round(w * sx / t)))
    labels = {
        key: display(getattr(volume, key).astype(np.float32, copy=False))
        for key in ("cord", "mask")
        if getattr(volume, key) is not None
    }
    spacing = (sy * h / out_hw[0], sx * w / out_hw[1])
    scale = torch.tensor([out_hw[0] / h, out_hw[1] / w], dtype=torch.float64)
    centres = (crop_centres(image.shape, list(labels.values())) + 0.5) * scale - 0.5
    size = tuple(config.size)
    starts = torch.floor(centres + 0.5).long() - torch.tensor([size[0] // 2, size[1] // 2])
    fill = image.amin((1, 2))  # = the resized slice's minimum: interpolation is convex
    image, landmarks = standardise_crops(resample_crop(image, out_hw, starts, size, fill, False),
                                         config)  # fmt: skip
    gm = labels.get("mask")
    if gm is None:
        mask = torch.zeros(z, *size)
    else:
        mask = resample_crop(gm, out_hw, starts, size, torch.zeros(z), True)
    keep = torch.arange(z)
    if config.drop_empty and gm is not None:
        keep = torch.nonzero(mask.sum((1, 2)) > 0).reshape(-1)
    subj = volume.subject
    n = len(keep)
    log.debug("%s: %d of %d slices kept", where, n, z)
    return SliceSet(
        images=image[keep, None].contiguous(),
        masks=mask[keep, None].contiguous(),
        spacing=torch.tensor([spacing], dtype=torch.float32).expand(n, 2).clone(),
        slice_index=keep.to(torch.int64),
        subject=[subj.id] * n,
        site=[subj.site] * n,
        group=[subj.group] * n,
        landmarks=None if landmarks is None else landmarks.expand(n, -1).clone(),
    )


# --------------------------------------------------------------------------- data set + cache


def _cache_file(dataset: SegDataset, config: PreprocessConfig, cache_dir: Path) -> Path:
    key = json.dumps(
        {"v": PREPROCESS_VERSION, "data": dataset.fingerprint(), "pre": config.cache_key()},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{dataset.name}-{digest}.pt"


def _save(slices: SliceSet, path: Path) -> None:
    """Cache ``slices`` atomically; a cache that cannot be written (a full disk) is skipped."""
    from ada_core.runfolder._io import StorageError, write_torch

    payload = {
        "images": slices.images, "masks": slices.masks.to(torch.uint8),
        "spacing": slices.spacing, "slice_index": slices.slice_index,
        "subject": slices.subject, "site": slices.site, "group": slices.group,
        "notes": slices.notes,
    }  # fmt: skip
    if slices.landmarks is not None:
        payload["landmarks"] = slices.landmarks
    try:
        write_torch(path, path.parent, payload)
    except StorageError as e:
        log.warning("slice cache not written (%s); the next run preprocesses again", e)


def _load(path: Path) -> SliceSet | None:
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return SliceSet(
            d["images"], d["masks"].float(), d["spacing"], d["slice_index"],
            d["subject"], d["site"], d["group"], d["notes"], d.get("landmarks"),
        )  # fmt: skip
    except Exception as e:  # a corrupt cache is rebuilt, never trusted
        log.warning("ignoring unreadable slice cache %s (%s); rebuilding it", path, e)
        return None


def _no_gm(volume: Volume) -> str:
    """Why a labelled volume gave no slice: an empty label, or grey matter outside the crops."""
    label = (volume.meta or {}).get("label") or f"the label of {volume.source or volume.subject.id}"
    if volume.mask is None or not np.any(volume.mask):
        return f"{label}: the GM label is all zero (no grey matter in any slice); fix the label file"
    return (f"{label}: no slice keeps grey matter after cropping to the preprocess size; check "
            "the crop size and the cord/GM masks that centre it")


def load_slices(
    dataset: SegDataset, config: PreprocessConfig, cache_dir: Path | None = None, *,
    save: bool = True,
) -> SliceSet:  # fmt: skip
    """Preprocess every labelled subject of ``dataset`` into one CPU :class:`SliceSet`.

    With ``config.cache`` and a ``cache_dir``, the result is stored under a key made of
    ``dataset.fingerprint()`` (files, sizes, mtimes, settings) and the preprocessing settings,
    so a second run starts at once and any changed file or setting rebuilds it. A run that
    skipped subjects is not cached, so the next run tries (and reports) them again. With
    ``save = False`` an existing cache is read but none is written (``ada config validate``).

    Raises:
        DataError: no labelled subject; a subject failed with ``on_error = "raise"`` (naming
            the subject and its file); every subject failed with ``on_error = "skip"``.
    """
    path = _cache_file(dataset, config, cache_dir) if cache_dir and config.cache else None
    if path is not None and path.is_file():
        cached = _load(path)
        if cached is not None:
            log.info("loaded %d slices from cache %s", len(cached), path)
            for note in cached.notes:  # what the first run reported holds for this one too
                warnings.warn(f"dataset {dataset.name!r}: {note}", DataWarning, stacklevel=2)
            return cached
    subjects = dataset.subjects()
    labelled = [s for s in subjects if s.labelled]
    notes: list[str] = []
    if len(labelled) < len(subjects):
        names = ", ".join(s.id for s in subjects if not s.labelled)
        notes.append(f"{len(subjects) - len(labelled)} unlabelled subjects not used: {names}")
    if not labelled:
        raise DataError(
            f"dataset {dataset.name!r} has no labelled subjects ({len(subjects)} listed); "
            "check its path and filters"
        )
    parts, skipped = [], []
    for subj in labelled:
        try:
            volume = dataset.load(subj)
            part = preprocess_volume(volume, config)
            if len(part) == 0:
                raise DataError(_no_gm(volume))
        except DataError as e:
            if config.on_error == "raise":
                raise DataError(f"dataset {dataset.name!r}, subject {subj.id!r}: {e}") from e
            skipped.append(f"skipped subject {subj.id!r}: {e}")
            continue
        parts.append(part)
    notes += skipped
    for note in notes:
        warnings.warn(f"dataset {dataset.name!r}: {note}", DataWarning, stacklevel=2)
    if not parts:
        raise DataError(f"dataset {dataset.name!r}: every subject failed:\n" + "\n".join(skipped))
    slices = SliceSet.concat(parts)
    slices.notes = notes
    if path is not None and save and not skipped:
        _save(slices, path)
    return slices
