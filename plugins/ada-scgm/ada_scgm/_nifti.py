"""NIfTI reading shared by the SCGM and BIDS loaders: reorientation, pair checks, labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def binary_label(
    label: Nifti,
    other_structures: bool = False,
    threshold: float | None = None,
    gm_values: Sequence[int] = (1,),
    values_setting: str | None = "gm_values",
) -> np.ndarray:
    """The label as uint8 {0, 1}: 1 where the structure (grey matter) is.

    Each voxel value is read as one of:

    - ``0``: background;
    - an integer in ``gm_values``: the structure;
    - another positive integer: another structure (the SCGM raters' masks mark white matter and
      others with values above 1), background when ``other_structures``, else an error;
    - a value strictly between 0 and 1 (a soft label): the structure when ``>= threshold``; an
      error without a threshold. The threshold never applies to integer values, so other
      structures never become grey matter;
    - anything else (negative, or fractional above 1): an error.

    Args:
        label: the label file.
        other_structures: positive integers outside ``gm_values`` are other structures.
        threshold: binarise soft values in (0, 1) at this value (in (0, 1]).
        gm_values: the integer values of the structure.
        values_setting: the loader setting that lists ``gm_values``, named in the advice
            (None: the loader has no such setting).

    Raises:
        DataError: naming the file, the offending values and the setting that fixes them.
    """
    data = label.data
    integer = data == np.round(data)
    gm = np.isin(data, np.asarray(gm_values, dtype=data.dtype)) & integer
    soft = (data > 0) & (data < 1)
    other = integer & (data > 0) & ~gm
    bad = ~soft & ~(integer & (data >= 0))
    def found(m: np.ndarray) -> list[float | int]:
        return [int(v) if v == round(v) else float(f"{v:.6g}") for v in np.unique(data[m])[:6]]

    gm_list = sorted(int(v) for v in gm_values)
    if bad.any():
        raise DataError(
            f"{label.path}: label has values {found(bad)} that are neither 0, integer structure "
            "codes nor soft values between 0 and 1; fix or regenerate the label file"
        )
    if other.any() and not other_structures:
        listed = (
            f"; if they are the structure itself, list them in {values_setting}"
            if values_setting
            else ""
        )
        raise DataError(
            f"{label.path}: label has integer values {found(other)} besides 0 and the "
            f"structure's value(s) {gm_list}; if they mark other structures, set "
            f'other_values = "background" to count them as background{listed}. '
            "(label_threshold is for soft labels between 0 and 1 and never makes integer "
            "values the structure.)"
        )
    if soft.any():
        if threshold is None:
            raise DataError(
                f"{label.path}: label has fractional values {found(soft)} (a soft label); set "
                "label_threshold (e.g. 0.5) to binarise values between 0 and 1"
            )
        gm |= soft & (data >= threshold)
    return gm.astype(np.uint8)


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
