"""What ``ada predict`` reads and writes: the cases of its inputs, the device, the NIfTI files.

Inputs are files or folders as nnU-Net takes them: a folder stands for every ``.nii`` /
``.nii.gz`` file in it, a file's case id is its name without the extension and without an
nnU-Net channel suffix (``case_0000.nii.gz`` is channel 0 of case ``case``). Every case is
planned and every file opened and checked before a model is loaded or an output written; the
results are written atomically, replacing (never writing through) a link at the output path.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ada_core.errors import InputError

__all__ = ["Case", "Scan", "check_cases", "plan_cases", "read_scan", "resolve_device", "write_like"]

_NIFTI = re.compile(r"\.nii(\.gz)?$")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
PROB_SUFFIX = "_gmprob"


@dataclass(frozen=True)
class Case:
    """One volume to segment and where its results go."""

    case: str
    image: Path
    cord: Path | None
    mask_out: Path
    prob_out: Path | None


@dataclass
class Scan:
    """A NIfTI image read for prediction."""

    image: Any  # the nibabel image as stored (its header and affine are written back)
    data: np.ndarray  # (X, Y, Z) float32, canonical (RAS+) orientation
    zooms: tuple[float, float, float]
    ornt: np.ndarray  # the file's orientation (nibabel io_orientation)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this machine has.

    Raises:
        InputError: not a device name, or a device this machine does not have (no CUDA GPU,
            a GPU index past the last one, no MPS).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"--device {device!r} is not a device ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {str(device)!r} is unavailable: this machine has no CUDA GPU "
                             "that torch can use; use --device cpu")  # fmt: skip
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device {str(device)!r} is unavailable: this machine has {count} "
                             f"CUDA GPU(s), cuda:0 to cuda:{count - 1}")  # fmt: skip
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(device)!r} is unavailable on this machine; use --device cpu")
    return dev


def _volumes_in(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if _NIFTI.search(p.name) and not p.name.startswith(".") and p.is_file())  # fmt: skip
        if not found:
            raise InputError(f"{path}: no .nii or .nii.gz file in this folder")
        return found
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    if not _NIFTI.search(path.name):
        raise InputError(f"{path}: not a NIfTI file name (.nii or .nii.gz)")
    return [path]


def _case_of(path: Path) -> tuple[str, str | None]:
    stem = _NIFTI.sub("", path.name)
    m = _CHANNEL.match(stem)
    return (m["case"], m["channel"]) if m else (stem, None)


def _cords(cords: Sequence[Path], cases: list[str]) -> list[Path]:
    if len(cords) == 1 and cords[0].is_dir():
        out = []
        for case in cases:
            names = [f"{case}{s}{e}" for s in ("", "_seg") for e in (".nii.gz", ".nii")]
            hit = next((cords[0] / n for n in names if (cords[0] / n).is_file()), None)
            if hit is None:
                raise InputError(f"{cords[0]}: no cord mask for case {case!r} "
                                 f"(looked for {names[0]} and {names[2]})")  # fmt: skip
            out.append(hit)
        return out
    if len(cords) != len(cases):
        raise InputError(f"{len(cords)} cord masks for {len(cases)} inputs; give one per input "
                         "(in the same order) or a folder of <case>.nii.gz masks")  # fmt: skip
    return list(cords)


def plan_cases(inputs: Sequence[str | Path], output: str | Path, *, cords: Sequence[str | Path] = (),
               probabilities: bool = False) -> list[Case]:  # fmt: skip
    """The cases of ``inputs`` (files and folders) and their output files, checked by name.

    Raises:
        InputError: no input; a missing file or an empty folder; two inputs of one case id; a
            case with a channel other than ``_0000`` (the models take one); a result that
            would overwrite an input or another result; a wrong count of cord masks.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input volume given; pass NIfTI files or a folder (--input a.nii.gz, -i scans/)")
    by_case: dict[str, list[tuple[str | None, Path]]] = {}
    seen: set[Path] = set()
    for path in paths:
        for p in _volumes_in(path):
            if p.resolve() in seen:  # the same file named twice (a file and its folder)
                continue
            seen.add(p.resolve())
            case, channel = _case_of(p)
            by_case.setdefault(case, []).append((channel, p))
    for case, files in by_case.items():
        channels = sorted({c for c, _ in files if c is not None})
        if channels and channels != ["0000"]:
            raise InputError(f"case {case!r} has channels {channels} ({', '.join(str(p) for _, p in files)}); "
                             "the model takes one image per case: its _0000 file")  # fmt: skip
        if len(files) > 1:
            raise InputError(f"inputs share the case id {case!r} ({', '.join(str(p) for _, p in files)}); "
                             "their results would overwrite each other")  # fmt: skip
    names = list(by_case)
    images = [by_case[c][0][1] for c in names]
    masks = _cords([Path(c) for c in cords], names) if cords else [None] * len(names)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder for the results")
    cases = [Case(c, img, cord, output / f"{c}.nii.gz",
                  output / f"{c}{PROB_SUFFIX}.nii.gz" if probabilities else None)
             for c, img, cord in zip(names, images, masks, strict=True)]  # fmt: skip
    read = {p.resolve() for p in images} | {p.resolve() for p in masks if p is not None}
    written: dict[Path, str] = {}
    for case in cases:
        for out in filter(None, (case.mask_out, case.prob_out)):
            real = out.parent.resolve() / out.name  # a link at the path itself is replaced
            if real in read:
                raise InputError(f"{out}: the result of case {case.case!r} would overwrite an "
                                 "input; write the results to another --output folder")  # fmt: skip
            if real in written:
                raise InputError(f"{out}: both case {written[real]!r} and {case.case!r} would "
                                 "write it; rename one of the inputs")  # fmt: skip
            written[real] = case.case
    return cases


def read_scan(path: Path) -> Scan:
    """A NIfTI image as a canonical float32 volume.

    Raises:
        InputError: missing, unreadable, not 3-D, or with NaN/infinite voxels (naming the file).
    """
    import nibabel as nib

    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    try:
        img = nib.load(str(path))
        canon = nib.as_closest_canonical(img)
        data = np.asarray(canon.dataobj, dtype=np.float32)
    except Exception as e:  # nibabel raises many types for a damaged file
        raise InputError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e}); the file is "
                         "truncated or not a NIfTI image") from e  # fmt: skip
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"{path}: {bad} NaN or infinite voxels; fix the file")
    zooms = tuple(float(z) for z in canon.header.get_zooms()[:3])
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        raise InputError(f"{path}: voxel size {zooms} is not 3 positive numbers; fix the header")
    return Scan(img, data, zooms, nib.io_orientation(img.affine))  # type: ignore[arg-type]


def read_case(case: Case) -> tuple[Scan, np.ndarray | None]:
    """The case's image and its binary cord mask (or None)."""
    scan = read_scan(case.image)
    if case.cord is None:
        return scan, None
    cord = read_scan(case.cord).data
    if cord.shape != scan.data.shape:
        raise InputError(f"{case.cord}: cord mask shape {cord.shape} differs from "
                         f"{case.image}'s {scan.data.shape}")  # fmt: skip
    return scan, (cord > 0.5).astype(np.float32)


def check_cases(cases: Sequence[Case]) -> None:
    """Open and check every input (and cord mask) before any work; see :func:`read_case`."""
    for case in cases:
        read_case(case)


def write_like(path: Path, canonical: np.ndarray, scan: Scan, dtype: type) -> Path:
    """Save ``canonical (X, Y, Z)`` on the grid and affine of ``scan``'s file, atomically.

    The file is written beside ``path`` and renamed onto it, so a link already at ``path`` is
    replaced by the result, never followed, and a reader never sees half a file.
    """
    import nibabel as nib
    from nibabel import orientations as o

    back = o.ornt_transform(o.axcodes2ornt("RAS"), scan.ornt)  # canonical -> the file's axes
    data = o.apply_orientation(canonical, back).astype(dtype)
    out = nib.Nifti1Image(data, scan.image.affine)
    hdr = scan.image.header
    out.header.set_xyzt_units(*hdr.get_xyzt_units())
    for form in ("qform", "sform"):  # keep the codes (scanner, aligned) of the input
        affine, code = getattr(hdr, f"get_{form}")(coded=True)
        if affine is not None and code:
            getattr(out.header, f"set_{form}")(affine, code=int(code))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".nii.gz")
    os.close(fd)  # created exclusively by us: a regular file, not a link someone left
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        nib.save(out, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
