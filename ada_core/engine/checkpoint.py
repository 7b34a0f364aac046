"""Checkpoints and JSON files written atomically, read safely.

- Every write goes to a temporary file in the same folder, is fsynced, renamed over the target
  (``os.replace`` is atomic: a reader sees the old file or the new one, never half), and the
  folder is fsynced so the rename survives a power cut.
- Every read uses ``torch.load(weights_only=True)``: a checkpoint holds tensors, numbers,
  strings, lists and dicts only, and a crafted file cannot run code (``pickle`` would).
- :func:`save_checkpoint` can keep the previous version (``keep_previous``): when the latest
  is unreadable, :func:`load_checkpoint` falls back to it with a warning.
- Temporary files a killed process left behind are removed by :func:`remove_stale_temporaries`
  at the next start; it only ever touches files named like this module's temporaries.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ada_core.errors import DataError

__all__ = [
    "CheckpointWarning",
    "atomic_write_text",
    "capture_rng",
    "load_checkpoint",
    "previous_path",
    "read_json",
    "remove_stale_temporaries",
    "restore_rng",
    "save_checkpoint",
    "tensor_digest",
    "write_json",
]

_TMP = re.compile(r"^\..+\.tmp\d+$")


class CheckpointWarning(UserWarning):
    """A checkpoint was unreadable and its previous version was used instead."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_into(path: Path, write: Callable[[Path], None], keep_previous: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()  # only ever our own temporary of this call


def previous_path(path: Path) -> Path:
    """Where :func:`save_checkpoint` keeps the previous version of ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries (``.<name>.tmp<pid>``) left in ``folder`` and below by a killed run.

    Returns the removed paths. Only files matching that pattern are touched.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.rglob(".*.tmp*"):
        if p.is_file() and _TMP.match(p.name):
            p.unlink()
            removed.append(p)
    return removed


def save_checkpoint(path: Path, state: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Write ``state`` with ``torch.save`` atomically (see the module docstring)."""
    _replace_into(Path(path), lambda tmp: torch.save(state, tmp), keep_previous)


def _read(path: Path, device: torch.device | str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:  # not a pickle at all: damaged
            raise DataError(f"checkpoint {path} is unreadable (not a torch checkpoint)") from None
        raise DataError(
            f"checkpoint {path} was refused: it holds {found.group(1)}, an object other than "
            "tensors, numbers, strings, lists and dicts, which could run code when loaded. "
            "ADA never writes such files; do not load checkpoints from untrusted sources"
        ) from None
    except Exception as e:
        raise DataError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from e


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu", *, fallback: bool = False
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the file.
        device: where tensors are mapped.
        fallback: when ``path`` is unreadable, use its previous version (written with
            ``keep_previous``) and warn with :class:`CheckpointWarning`.

    Raises:
        DataError: naming the file: missing, unreadable (and no readable previous version),
            or refused because it could execute code.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; run the phase that writes it first")
    try:
        return _read(path, device)
    except DataError as e:
        prev = previous_path(path)
        if not fallback or not prev.is_file() or "refused" in str(e):
            raise
        state = _read(prev, device)
        warnings.warn(
            f"{e}; using the previous checkpoint {prev.name} instead (the epochs after it are "
            "trained again, with the same result)",
            CheckpointWarning,
            stacklevel=2,
        )
        return state


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write_text(path: Path, text: str) -> None:
    _replace_into(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict, indented JSON atomically (NaN -> null)."""
    atomic_write_text(path, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; DataError names a file that is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); it was damaged outside ADA") from None


def tensor_digest(tensors: Any) -> str:
    """sha256 of the tensors in a (nested) state dict, in key order: their bytes on the CPU.

    Used to record which weights, optimizer state and random state a branch started from.
    """
    h = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for k in value:
                h.update(str(k).encode())
                visit(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        else:
            h.update(repr(value).encode())

    visit(tensors)
    return h.hexdigest()


def capture_rng(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """States of the named generators and of torch's global RNGs (dropout uses those)."""
    state: dict[str, Any] = {name: g.get_state() for name, g in generators.items()}
    state["_torch"] = torch.get_rng_state()
    if device.type == "cuda":
        state["_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(
    state: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device
) -> None:
    """Inverse of :func:`capture_rng`.

    Raises:
        DataError: the saved states come from another device type (e.g. a CPU run's
            checkpoint resumed on CUDA).
    """
    for name, g in generators.items():
        try:
            g.set_state(state[name].cpu())  # generator states are CPU byte tensors, even on CUDA
        except (RuntimeError, KeyError) as e:
            raise DataError(
                f"checkpoint random state {name!r} does not fit a {g.device.type} generator "
                f"({e}); it was written by a run on another device: resume on the same device"
            ) from None
    torch.set_rng_state(state["_torch"].cpu())
    if device.type == "cuda" and "_cuda" in state:
        torch.cuda.set_rng_state(state["_cuda"].cpu(), device)
