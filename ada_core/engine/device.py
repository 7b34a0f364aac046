"""The machine a plan runs on: ``train.device`` resolved (:func:`resolve_device`) and the
settings that cannot act there, warned, not refused (GPU-only keys under ``train.device =
'auto'`` without CUDA: the same file is meant to run on a GPU machine as it is). The warnings
are printed by ``ada config validate`` and at the start of every run
(:attr:`ada_core.engine.plan.RunPlan.notes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ada_core._train_config import CUDA_ONLY
from ada_core.errors import ConfigError
from ada_core.fieldtags import field_uses

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["component_cuda_notes", "cuda_only_notes", "resolve_device"]


def cuda_only_notes(train: Any, device: torch.device) -> tuple[str, ...]:
    """A warning naming the CUDA-only settings the user set when ``train.device`` (not 'cpu':
    that is refused with the config) resolved to the CPU: ``'auto'`` on a machine without
    CUDA. Not refused: the same file is meant to run on a GPU machine as it is."""
    if device.type != "cpu":
        return ()
    keys = [f"train.{k}" for k in CUDA_ONLY if k in train.model_fields_set]
    if not keys:
        return ()
    removes = " ".join(f"--set '~{k}'" for k in keys)
    return (f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} set but train.device = "
            f"{train.device!r} resolves to the CPU on this machine, where "
            f"{'it has' if len(keys) == 1 else 'they have'} no effect; run on a CUDA machine "
            f"to use {'it' if len(keys) == 1 else 'them'}, or "
            f"remove {'it' if len(keys) == 1 else 'them'} ({removes})",)


def component_cuda_notes(config: ExperimentConfig, registry: Registry,
                          device: torch.device) -> tuple[str, ...]:  # fmt: skip
    """As :func:`cuda_only_notes`, for a component's GPU-only parameters (``used_for("cuda")``,
    an attributor's ``amp``) set while ``train.device`` resolved to the CPU."""
    if device.type != "cpu":
        return ()
    specs = [("attributor", sp, f"attributors[{i}]") for i, sp in enumerate(config.attributors)]
    specs += [("model", config.model, "model"), ("mask", config.mask, "mask")]
    keys = []
    for kind, spec, where in specs:
        fields = registry.sections[kind].get(spec.name).Config.model_fields
        keys += [f"{where}.params.{n}" for n in spec.params if "cuda" in (field_uses(fields[n]) or ())]
    return tuple(f"{k} is set but train.device = {config.train.device!r} resolves to the CPU on "
                 f"this machine, where it has no effect; run on a CUDA machine to use it, or "
                 f"remove it (--set '~{k}')" for k in keys)  # fmt: skip


def resolve_device(spec: str) -> torch.device:
    """``train.device`` -> a torch device; 'auto' is CUDA when available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"train.device = {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device = {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {spec!r} but CUDA is not available; use 'auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device = {spec!r}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s)"
            )
    return device
