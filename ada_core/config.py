"""Run configuration: pydantic models read from TOML, with ``--set key=value`` overrides.

Component parameters (``params``) are free-form here and validated against the component's
own ``Config`` by :func:`ada_core.registry.Registry.validate_experiment` when a run starts.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ada_core.augment import AugmentConfig
from ada_core.data import PreprocessConfig
from ada_core.splits import SplitConfig
from ada_core.errors import ConfigError, closest

__all__ = [
    "ComponentSpec",
    "DataSpec",
    "EvalSpec",
    "ExperimentConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
    "to_toml",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(BaseModel):
    """A component by registry name, with the parameters of its ``Config``."""

    model_config = _STRICT

    name: str = Field(description="Registry key of the component (see `ada plugins`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Fields of its Config.")
    label: str | None = Field(None, description="Branch label; defaults to the name.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def key(self) -> str:
        return self.label or self.name


class DataSpec(ComponentSpec):
    """The data set component plus the shared preprocessing and split settings."""

    name: str = Field("phantom", description="Registry key of the data set.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)


class EvalSpec(DataSpec):
    """An extra evaluation set: every branch's best checkpoint is scored on it as well.

    E.g. another site or data set (generalisation), or the phantom without its context cue
    (does the model lean on the cue?). ``label`` names it in the summary.
    """

    part: Literal["all", "val", "train"] = Field(
        "all", description="Which slices: all labelled ones, or the validation / training "
        "part of this set's own `split` (same persons as the run's split when the data match)."
    )


class TrainConfig(BaseModel):
    """Algorithm 1's schedule and optimisation (paper defaults)."""

    model_config = _STRICT

    standard_epochs: int = Field(100, ge=0, description="Epochs of conventional training.")
    cycles: int = Field(31, ge=0, description="ADA cycles per branch.")
    ada_epochs: int = Field(30, ge=1, description="Epochs per ADA cycle.")
    batch_size: int = Field(16, ge=1, description="Training batch size.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    loss: Literal["dice", "bce", "dice+bce"] = Field("dice", description="Training loss.")
    seed: int = Field(0, description="Seed of everything random in the run.")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'.")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA.")
    eval_batch_size: int = Field(64, ge=1, description="Batch size for attribution and evaluation.")
    augment_ada_images: bool = Field(
        True, description="Apply the classical augmentation to ADA images too (not only to "
        "the conventional ones)."
    )
    save_ada_images: bool = Field(
        True, description="Save each branch's first-cycle ADA images (cycle1.pt) besides its "
        "keep masks, for figures and checks."
    )
    robustness: bool = Field(
        True, description="Evaluate each branch's best checkpoint on the robustness set "
        "(Algorithm 2) at the end of a run."
    )
    robustness_size: int | None = Field(
        None, ge=1, description="Side Z of the robustness set's zeroed square; None takes the "
        "mask builder's `size` (20 when it has none)."
    )
    reuse_standard: bool = Field(
        True, description="Reuse a finished standard phase in the run folder whose settings "
        "(data, model, augmentation, schedule, seed) are unchanged, instead of retraining it."
    )
    control_steps: Literal["epochs", "matched"] = Field(
        "epochs", description="The `none` control: 'epochs' trains the same epochs on the "
        "conventional data (N images per epoch, the paper's design); 'matched' shows the "
        "conventional data twice per epoch, the optimiser steps of an ADA branch (2N images)."
    )


class ExperimentConfig(BaseModel):
    """A whole run: data, model, attributors, mask builder, schedule, augmentation."""

    model_config = _STRICT

    name: str = Field("ada", description="Run name: results go to <output>/<name>/.")
    output: Path = Field(Path("runs"), description="Folder that holds run folders.")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="unet-paper"))
    attributors: list[ComponentSpec] = Field(
        default_factory=lambda: [
            ComponentSpec(name=n)
            for n in ("vanilla", "guided_backprop", "gradcam", "guided_gradcam", "input_x_gradient")
        ],
        description="One ADA branch per attributor; 'none' is the keep-training control.",
    )
    mask: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="window"))
    evaluate: list[EvalSpec] = Field(
        default_factory=list,
        description="Extra evaluation sets scored at every branch's best checkpoint.",
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("evaluate")
    @classmethod
    def _unique_eval_labels(cls, specs: list[EvalSpec]) -> list[EvalSpec]:
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"evaluation set labels must be unique, got {keys}; set `label`")
        return specs

    @field_validator("attributors")
    @classmethod
    def _unique_labels(cls, specs: list[ComponentSpec]) -> list[ComponentSpec]:
        keys = [s.key for s in specs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(
                f"branch labels must be unique, {dupes} repeat; give repeated attributors "
                "distinct `label`s"
            )
        return specs


def _format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            near = closest(str(e["loc"][-1]), _field_names(model, e["loc"][:-1]))
            msg = "unknown key" + (f"; did you mean {near!r}?" if near else "")
        elif "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model that ``loc`` points into (for suggestions)."""
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def parse_config(data: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a config mapping; errors name ``source`` and each offending dotted key."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source, ExperimentConfig)) from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as TOML, else strings) to a mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.cycles=3")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a table"
                )
            node = child
        node[parts[-1]] = _parse_value(text.strip())
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if overrides:
        data = apply_overrides(data, list(overrides))
        source += " (with --set overrides)"
    return parse_config(data, source)


def _toml_lines(data: dict[str, Any], prefix: str = "") -> list[str]:
    scalars, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        elif value is not None:  # TOML has no null: an absent key means the default (None)
            scalars.append(f"{key} = {json.dumps(value)}")
    lines = list(scalars)
    for key, value in tables:
        lines += ["", f"[{prefix}{key}]", *_toml_lines(value, f"{prefix}{key}.")]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{prefix}{key}]]", *_toml_lines(item, f"{prefix}{key}.")]
    return lines


def to_toml(config: ExperimentConfig, header: str = "") -> str:
    """The config as TOML that :func:`load_config` reads back to an equal config."""
    body = "\n".join(_toml_lines(config.model_dump(mode="json"))).strip() + "\n"
    return (f"# {header}\n" if header else "") + body
