"""Random-generator states and tensor digests: what makes a resumed phase continue exactly.

The files these go into are written and read by :mod:`ada_core.runfolder`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ada_core.errors import DataError

__all__ = ["capture_rng", "restore_rng", "tensor_digest"]


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
