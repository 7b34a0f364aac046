"""Shared preprocessing: volumes -> 2-D slice tensors, the slice cache, and subject-level splits.

Every dataset plugin gets the same pipeline (:func:`preprocess_volume`): take axial slices of a
canonically oriented volume, show them in display orientation (anterior up, the patient's left
on the left), resample in-plane to ``spacing`` (image linear, mask linear then thresholded at
0.5 so labels never bleed), crop ``size`` around the cord / grey matter / image centre (padding
where the image is smaller), normalise each slice, optionally drop slices without grey matter.
:func:`load_slices` runs it over a data set with an on-disk cache and a per-subject error policy;
:func:`split_subjects` and :func:`split_slices` split by person, never by slice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ada_core.errors import DataError
from ada_core.splits import SplitConfig, split_groups, split_slices, split_subjects

if TYPE_CHECKING:
    from ada_core.interfaces import SegDataset, Subject, Volume

__all__ = [
    "DataWarning",
    "PreprocessConfig",
    "SliceSet",
    "SplitConfig",
    "load_slices",
    "preprocess_volume",
    "split_groups",
    "split_slices",
    "split_subjects",
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
    """

    images: Tensor
    masks: Tensor
    spacing: Tensor
    slice_index: Tensor
    subject: list[str]
    site: list[str]
    group: list[str]
    notes: list[str] = field(default_factory=list)

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
        )


class PreprocessConfig(BaseModel):
    """How volumes become slices (defaults from the SCGM literature: 0.25 mm, 200 x 200)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spacing: float = Field(0.25, gt=0, description="Target in-plane voxel size in mm.")
    size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = Field(
        (200, 200), description="Crop (height, width) in pixels."
    )
    normalize: Literal["zscore", "minmax", "none"] = Field(
        "zscore", description="Per-slice intensity normalisation (over the cropped slice)."
    )
    drop_empty: bool = Field(True, description="Drop slices without grey matter.")
    cache: bool = Field(True, description="Cache preprocessed slices on disk (needs a cache_dir).")
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="A subject that fails to load: 'raise' stops with its error; 'skip' leaves "
        "it out and reports every skipped subject with its reason (a DataWarning and "
        "SliceSet.notes).",
    )

    def cache_key(self) -> dict[str, object]:
        """The settings that change the slices (not ``cache`` nor ``on_error``)."""
        return self.model_dump(exclude={"cache", "on_error"})


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


def _display(arr: np.ndarray) -> Tensor:
    """``(X, Y, Z)`` volume -> ``(Z, H=Y, W=X)`` slices, anterior up (rows = Y reversed)."""
    out = np.ascontiguousarray(arr.transpose(2, 1, 0)[:, ::-1, :])
    return torch.from_numpy(out)


def _resample_crop(
    x: Tensor, out_hw: tuple[int, int], starts: Tensor, size: tuple[int, int], fill: Tensor,
    binary: bool,
) -> Tensor:
    """Crop ``size`` at ``starts (Z, 2)`` from ``x (Z, H, W)`` resized to ``out_hw``.

    Same as resizing the whole slice (bilinear, half-pixel centres, edges clamped; antialiased
    when shrinking) and cropping, but an enlargement samples only the cropped pixels. Pixels
    outside the resized slice take ``fill (Z,)``; ``binary`` thresholds at 0.5.
    """
    z, h, w = x.shape
    if (h, w) == out_hw:
        return _crop(x, starts, size, fill)
    if out_hw[0] < h or out_hw[1] < w:
        y = F.interpolate(x[:, None], size=out_hw, mode="bilinear", align_corners=False,
                          antialias=True)[:, 0]  # fmt: skip
        y = _crop(y, starts, size, fill)
    else:
        rows = starts[:, :1] + torch.arange(size[0])  # (Z, h') in the resized grid
        cols = starts[:, 1:] + torch.arange(size[1])  # (Z, w')
        gy = (2 * (rows + 0.5) / out_hw[0] - 1).float()[:, :, None].expand(z, *size)
        gx = (2 * (cols + 0.5) / out_hw[1] - 1).float()[:, None, :].expand(z, *size)
        grid = torch.stack([gx, gy], dim=-1)
        y = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[:, 0]  # fmt: skip
        inside = ((rows >= 0) & (rows < out_hw[0]))[:, :, None] & (
            (cols >= 0) & (cols < out_hw[1])
        )[:, None, :]
        y = torch.where(inside, y, fill[:, None, None].to(y.dtype))
    return (y >= 0.5 - 1e-4).float() if binary else y  # exact ties count as label in float32


def _centroids(m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-slice pixel count and centroid (row, col) of ``(Z, H, W)`` masks."""
    rows = torch.arange(m.shape[1], dtype=torch.float64)
    cols = torch.arange(m.shape[2], dtype=torch.float64)
    per_row, per_col = m.sum(2).double(), m.sum(1).double()  # exact counts in float32
    n = per_row.sum(1)
    safe = n.clamp(min=1)
    return n, (per_row * rows).sum(1) / safe, (per_col * cols).sum(1) / safe


def _crop_centres(shape: tuple[int, int, int], masks: Sequence[Tensor]) -> Tensor:
    """``(Z, 2)`` crop centres (row, col) from ``masks`` in priority order.

    Per slice: the centroid of the first mask with pixels in that slice; a slice without any
    takes the volume centroid of the first non-empty mask; an unlabelled volume the image centre.
    """
    z, h, w = shape
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64).repeat(z, 1)
    stats = [_centroids(m) for m in masks]
    for n, r, c in stats:
        if n.sum() > 0:
            total = n.sum()
            centre[:] = torch.stack([(n * r).sum() / total, (n * c).sum() / total])
            break
    for n, r, c in reversed(stats):  # higher priority overwrites
        hit = n > 0
        centre[hit] = torch.stack([r, c], 1)[hit]
    return centre


def _crop(x: Tensor, starts: Tensor, size: tuple[int, int], fill: Tensor) -> Tensor:
    """Per-slice crops of ``(Z, H, W)`` at ``starts (Z, 2)``; outside pixels take ``fill (Z,)``."""
    z, h, w = x.shape
    rows = starts[:, :1] + torch.arange(size[0])  # (Z, h')
    cols = starts[:, 1:] + torch.arange(size[1])  # (Z, w')
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = x[
        torch.arange(z)[:, None, None],
        rows.clamp(0, h - 1)[:, :, None],
        cols.clamp(0, w - 1)[:, None, :],
    ]
    return torch.where(inside, out, fill[:, None, None].to(out.dtype))


def _normalise(x: Tensor, how: str) -> Tensor:
    if how == "zscore":
        mean = x.mean((1, 2), keepdim=True)
        std = x.std((1, 2), keepdim=True, unbiased=False)
        return (x - mean) / torch.where(std > 1e-8, std, torch.ones_like(std))
    if how == "minmax":
        lo = x.amin((1, 2), keepdim=True)
        span = x.amax((1, 2), keepdim=True) - lo
        return (x - lo) / torch.where(span > 1e-8, span, torch.ones_like(span))
    return x


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
    image = _display(volume.image.astype(np.float32, copy=False))
    z, h, w = image.shape
    t = config.spacing
    same = abs(sx - t) <= 1e-6 * t and abs(sy - t) <= 1e-6 * t
    out_hw = (h, w) if same else (max(1, round(h * sy / t)), max(1, round(w * sx / t)))
    labels = {
        key: _display(getattr(volume, key).astype(np.float32, copy=False))
        for key in ("cord", "mask")
        if getattr(volume, key) is not None
    }
    spacing = (sy * h / out_hw[0], sx * w / out_hw[1])
    scale = torch.tensor([out_hw[0] / h, out_hw[1] / w], dtype=torch.float64)
    centres = (_crop_centres(image.shape, list(labels.values())) + 0.5) * scale - 0.5
    size = tuple(config.size)
    starts = torch.floor(centres + 0.5).long() - torch.tensor([size[0] // 2, size[1] // 2])
    fill = image.amin((1, 2))  # = the resized slice's minimum: interpolation is convex
    image = _normalise(_resample_crop(image, out_hw, starts, size, fill, False), config.normalize)
    gm = labels.get("mask")
    if gm is None:
        mask = torch.zeros(z, *size)
    else:
        mask = _resample_crop(gm, out_hw, starts, size, torch.zeros(z), True)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    payload = {
        "images": slices.images, "masks": slices.masks.to(torch.uint8),
        "spacing": slices.spacing, "slice_index": slices.slice_index,
        "subject": slices.subject, "site": slices.site, "group": slices.group,
        "notes": slices.notes,
    }  # fmt: skip
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache behind


def _load(path: Path) -> SliceSet | None:
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return SliceSet(
            d["images"], d["masks"].float(), d["spacing"], d["slice_index"],
            d["subject"], d["site"], d["group"], d["notes"],
        )  # fmt: skip
    except Exception as e:  # a corrupt cache is rebuilt, never trusted
        log.warning("ignoring unreadable slice cache %s (%s); rebuilding it", path, e)
        return None


def load_slices(
    dataset: SegDataset, config: PreprocessConfig, cache_dir: Path | None = None
) -> SliceSet:
    """Preprocess every labelled subject of ``dataset`` into one CPU :class:`SliceSet`.

    With ``config.cache`` and a ``cache_dir``, the result is stored under a key made of
    ``dataset.fingerprint()`` (files, sizes, mtimes, settings) and the preprocessing settings,
    so a second run starts at once and any changed file or setting rebuilds it. A run that
    skipped subjects is not cached, so the next run tries (and reports) them again.

    Raises:
        DataError: no labelled subject; a subject failed with ``on_error = "raise"`` (naming
            the subject and its file); every subject failed with ``on_error = "skip"``.
    """
    path = _cache_file(dataset, config, cache_dir) if cache_dir and config.cache else None
    if path is not None and path.is_file():
        cached = _load(path)
        if cached is not None:
            log.info("loaded %d slices from cache %s", len(cached), path)
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
            part = preprocess_volume(dataset.load(subj), config)
            if len(part) == 0:
                raise DataError(f"subject {subj.id!r}: no slice with grey matter after cropping")
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
    if path is not None and not skipped:
        _save(slices, path)
    return slices
