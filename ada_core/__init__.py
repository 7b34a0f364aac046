"""ADA: Active Data Augmentation for medical image segmentation.

Public surface: the interfaces, the config models, the registry and plugin loading, and the
Python API (docs/api.md): :func:`run` a study, :func:`load_run` a run folder (summary, tables,
models), :func:`load_model`, :func:`predict_files`. Names are imported on first use (so
``ada --help`` does not wait for torch), and no plugin is loaded at import: call
:func:`load_plugins`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ada_core._version import __version__

_EXPORTS = {
    "AdaError": "ada_core.errors",
    "ConfigError": "ada_core.errors",
    "ContractError": "ada_core.errors",
    "DataError": "ada_core.errors",
    "DataWarning": "ada_core.data",
    "InputError": "ada_core.errors",
    "PluginError": "ada_core.errors",
    "PluginWarning": "ada_core.errors",
    "UnknownComponentError": "ada_core.errors",
    "closest": "ada_core.errors",
    "suggest": "ada_core.errors",
    "Attributor": "ada_core.interfaces",
    "ComponentConfig": "ada_core.interfaces",
    "MaskBuilder": "ada_core.interfaces",
    "SegDataset": "ada_core.interfaces",
    "SegModel": "ada_core.interfaces",
    "Subject": "ada_core.interfaces",
    "Volume": "ada_core.interfaces",
    "check_image_batch": "ada_core.interfaces",
    "input_gradients_only": "ada_core.interfaces",
    "ComponentSpec": "ada_core.config",
    "ExperimentConfig": "ada_core.config",
    "load_config": "ada_core.config",
    "tags": "ada_core.fieldtags",
    "Unused": "ada_core.fieldtags",
    "used_for": "ada_core.fieldtags",
    "used_if": "ada_core.fieldtags",
    "used_unless": "ada_core.fieldtags",
    "used_when": "ada_core.fieldtags",
    "hookimpl": "ada_core.hookspecs",
    "load_plugins": "ada_core.plugins",
    "PluginInfo": "ada_core.registry",
    "Registry": "ada_core.registry",
    "Run": "ada_core.api",
    "RunResult": "ada_core.api",
    "load_run": "ada_core.api",
    "run": "ada_core.api",
    "RunSummary": "ada_core.runfolder",
    "load_model": "ada_core.predict",
    "predict_files": "ada_core.predict",
    "predict_volume": "ada_core.predict",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ada_core' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from ada_core.config import ComponentSpec, ExperimentConfig, load_config
    from ada_core.data import DataWarning
    from ada_core.errors import (
        AdaError,
        ConfigError,
        ContractError,
        DataError,
        InputError,
        PluginError,
        PluginWarning,
        UnknownComponentError,
        closest,
        suggest,
    )
    from ada_core.fieldtags import Unused, tags, used_for, used_if, used_unless, used_when
    from ada_core.hookspecs import hookimpl
    from ada_core.interfaces import (
        Attributor,
        ComponentConfig,
        MaskBuilder,
        SegDataset,
        SegModel,
        Subject,
        Volume,
        check_image_batch,
        input_gradients_only,
    )
    from ada_core.api import Run, RunResult, load_run, run
    from ada_core.runfolder import RunSummary
    from ada_core.plugins import load_plugins
    from ada_core.predict import load_model, predict_files, predict_volume
    from ada_core.registry import PluginInfo, Registry
