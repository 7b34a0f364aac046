"""Atomic checkpoints (tmp file + os.replace) and the random state they carry."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from ada_core.errors import DataError

__all__ = [
    "atomic_write_text",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "tensor_digest",
    "write_json",
]


def _replace_into(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically."""
    _replace_into(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; DataError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; run the phase that writes it first")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise DataError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it "
            "and run again without --resume"
        ) from e


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
                f"({e}); it was written by a run on another device: resume on the same device "
                "or start the run afresh"
            ) from None
    torch.set_rng_state(state["_torch"].cpu())
    if device.type == "cuda" and "_cuda" in state:
        torch.cuda.set_rng_state(state["_cuda"].cpu(), device)
