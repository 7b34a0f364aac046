"""NIfTI reading shared by the SCGM and BIDS loaders: reorientation, pair checks, labels."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from ada_core import DataError

__all__ = ["Nifti", "binary_label", "check_pair", "files_fingerprint", "read_nifti"]


class Nifti:
    """A NIfTI file read and reoriented to the closest canonical (RAS+) orientation.

    Attributes:
        path: the file.
        data: ``(X, Y, Z)`` array after reorientation (float64 from nibabel's scaling).
        spacing: voxel size in mm after reorientation.
        affine: the *original* affine (pairs are compared on it, as stored on disk).
        shape: the original shape.
    """

    def __init__(self, path: Path, data: np.ndarray, spacing: tuple[float, float, float],
                 affine: np.ndarray, shape: tuple[int, ...]) -> None:  # fmt: skip
        self.path, self.data, self.spacing, self.affine, self.shape = (
            path, data, spacing, affine, shape,
        )  # fmt: skip


def read_nifti(path: Path) -> Nifti:
    """Read ``path`` as a 3-D volume; any failure becomes a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        canon = nib.as_closest_canonical(img)
        data = np.asanyarray(canon.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        spacing = tuple(float(z) for z in canon.header.get_zooms()[:3])
    except Exception as e:  # truncated gzip, bad header, ... (nibabel raises many types)
        raise DataError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e}); "
                        "the file is truncated or not a NIfTI image") from e  # fmt: skip
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{path}: expected numeric voxels, got dtype {data.dtype}")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise DataError(f"{path}: {bad} NaN or infinite voxels; fix the file or remove it")
    return Nifti(path, data, spacing, img.affine, tuple(img.shape[:3]))


def check_pair(image: Nifti, label: Nifti, atol: float = 1e-3) -> None:
    """Raise DataError naming both files unless they share shape and affine (``atol`` mm)."""
    if image.shape != label.shape:
        raise DataError(
            f"shape mismatch: image {image.path} has shape {image.shape} but label "
            f"{label.path} has shape {label.shape}; they must be on the same voxel grid"
        )
    if not np.allclose(image.affine, label.affine, atol=atol, rtol=0):
        num = lambda v: f"{v:.4f}".rstrip("0").rstrip(".")  # noqa: E731
        fmt = lambda a: np.array2string(  # noqa: E731
            np.asarray(a), separator=", ", formatter={"float_kind": num}
        ).replace("\n", "")
        raise DataError(
            f"affine mismatch: image {image.path} has affine {fmt(image.affine)} but label "
            f"{label.path} has affine {fmt(label.affine)}; resample the label onto the image"
        )


def binary_label(label: Nifti, other_structures: bool = False,
                 threshold: float | None = None) -> np.ndarray:  # fmt: skip
    """The label as uint8 {0, 1}.

    Args:
        label: the label file.
        other_structures: values above 1 mark other structures (the SCGM raters' masks) and
            become 0; without it any value outside {0, 1} is an error.
        threshold: binarise soft labels at this value instead of rejecting them (after
            zeroing other structures when ``other_structures`` is set).

    Raises:
        DataError: naming the file and the offending values.
    """
    data = label.data
    if threshold is not None:
        if other_structures:  # other-structure labels (integers > 1) are never GM
            data = np.where((data > 1) & (data == np.round(data)), 0, data)
        return (data >= threshold).astype(np.uint8)
    ok = (data == 0) | (data == 1)
    if other_structures:
        ok |= (data > 1) & (data == np.round(data))
    if not ok.all():
        found = np.unique(data[~ok])[:6].tolist()
        extra = " or integers > 1 (other structures)" if other_structures else ""
        raise DataError(
            f"{label.path}: label must contain only 0 and 1{extra}, found {found}; "
            "set label_threshold to binarise soft labels"
        )
    return (data == 1).astype(np.uint8)


def files_fingerprint(paths: Iterable[Path], root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of each existing file, sorted: changes when files do."""
    rows = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        rows.append((str(p.relative_to(root)) if p.is_relative_to(root) else str(p),
                     st.st_size, st.st_mtime_ns))  # fmt: skip
    return sorted(rows)
