"""ADA: Active Data Augmentation for medical image segmentation.

Public surface: the interfaces, the config models, the registry and plugin loading.
Nothing is loaded at import; call :func:`load_plugins`.
"""

from ada_core.config import ComponentSpec, ExperimentConfig, load_config
from ada_core.errors import AdaError, ConfigError, DataError, InputError, PluginError
from ada_core.hookspecs import hookimpl
from ada_core.interfaces import (
    Attributor,
    ComponentConfig,
    MaskBuilder,
    SegDataset,
    SegModel,
    Subject,
    Volume,
)
from ada_core.plugins import load_plugins
from ada_core.registry import Registry

__version__ = "0.1.0"

__all__ = [
    "AdaError",
    "Attributor",
    "ComponentConfig",
    "ComponentSpec",
    "ConfigError",
    "DataError",
    "ExperimentConfig",
    "InputError",
    "MaskBuilder",
    "PluginError",
    "Registry",
    "SegDataset",
    "SegModel",
    "Subject",
    "Volume",
    "hookimpl",
    "load_plugins",
    "load_config",
    "__version__",
]
