"""Run configuration: pydantic models read from TOML, with ``--set key=value`` overrides
(:mod:`ada_core._overrides`: dotted keys with list indices, ``attributors[0].params.layer``).

Component parameters (``params``) are free-form here and validated against the component's
own ``Config`` by :func:`ada_core.registry.Registry.validate_experiment` when a run starts.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ada_core._overrides import apply_overrides
from ada_core._study_config import StudyConfig
from ada_core._train_config import TrainConfig
from ada_core.augment import AugmentConfig
from ada_core.data import PreprocessConfig
from ada_core.errors import ConfigError, closest
from ada_core.fieldtags import (
    ALLOW_UNUSED,
    Settings,
    Unused,
    active_data,
    affects,
    dotted_loc,
    unused_lines,
    used_when,
)
from ada_core.splits import SplitConfig

__all__ = [
    "ComponentSpec",
    "DataSpec",
    "EvalSpec",
    "ExperimentConfig",
    "TrainConfig",
    "SLUG_RULE",
    "apply_overrides",
    "check_slug",
    "load_config",
    "parse_config",
    "to_toml",
]

#: Run names and branch / evaluation-set labels become folder names: they must be path-safe.
SLUG_RULE = (
    "1-64 characters from letters, digits, '.', '_' and '-', starting with a letter or digit "
    "(no '/', no '..', no absolute path)"
)
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_slug(value: str) -> str:
    """Return ``value`` when it is a path-safe name (:data:`SLUG_RULE`), else raise ValueError."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value) or ".." in value:
        raise ValueError(f"{value!r} is not a path-safe name: use {SLUG_RULE}")
    return value


class ComponentSpec(Settings):
    """A component by registry name, with the parameters of its ``Config``."""

    name: str = Field(description="Registry key of the component (see `ada plugins`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Fields of its Config.")
    label: str | None = Field(
        None, description="Branch label (of an entry of `attributors` or `evaluate`; refused "
        "on `data`, `model` and `mask`, which nothing names); defaults to the name. Becomes a "
        f"folder name, so it must be path-safe: {SLUG_RULE}."
    )

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
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig, description="How volumes become slices."
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig,
        description="Training / validation / test parts, by person.",
    )


class EvalSpec(DataSpec):
    """An extra evaluation set: every branch's best checkpoint is scored on it as well.

    E.g. another site or data set (generalisation), or the phantom without its context cue
    (does the model lean on the cue?). ``label`` names it in the summary.
    """

    part: Literal["all", "val", "train"] = Field(
        "all", description="Which slices: all labelled ones, or the validation / training "
        "part of this set's own `split` (same persons as the run's split when the data match)."
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig,
        description="The parts of this set that `part` picks from.",
        json_schema_extra=used_when("part", "val", "train"),
    )


class ExperimentConfig(Settings):
    """A whole run: data, model, attributors, mask builder, schedule, augmentation."""

    settings_root = True

    name: str = Field(
        "ada", description=f"Run name: results go to <output>/<name>/. {SLUG_RULE}.",
        json_schema_extra=affects("none"),
    )
    output: Path = Field(
        Path("runs"), description="Folder that holds run folders.",
        json_schema_extra=affects("none"),
    )
    data: DataSpec = Field(
        default_factory=DataSpec, description="The data set, its preprocessing and split.",
        json_schema_extra=affects("standard"),
    )
    model: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="unet-paper"),
        description="The segmentation network.",
        json_schema_extra=affects("standard"),
    )
    attributors: list[ComponentSpec] = Field(
        default_factory=lambda: [
            ComponentSpec(name=n)
            for n in ("vanilla", "guided_backprop", "gradcam", "guided_gradcam", "input_x_gradient")
        ],
        description="One branch per entry: an attributor (ADA) or 'none', the keep-training "
        "control (params.steps = 'epochs' | 'matched'). Each branch's key covers only its own "
        "entry.",
        json_schema_extra=affects("branch"),
    )
    mask: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="window"),
        description="The mask builder that turns saliency into the erased region.",
        json_schema_extra=affects("branch"),
    )
    evaluate: list[EvalSpec] = Field(
        default_factory=list,
        description="Extra evaluation sets scored at every phase's selected checkpoint.",
        json_schema_extra=affects("eval"),
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Schedule, optimisation and evaluation."
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="Classical augmentation (the paper's Table 2).",
        json_schema_extra=affects("standard"),
    )
    study: StudyConfig = Field(
        default_factory=StudyConfig,
        description="The study's question (primary endpoint) and levels; changes only the "
        "analysis.",
        json_schema_extra=affects("none"),
    )

    def _unused_below(self) -> list[Unused]:
        # `label` names a branch or an evaluation set; on data, model and mask nothing reads it
        return [Unused(f"{key}.label", None, why=f"{key} is no branch nor [[evaluate]] set, and "
                       "a label names only those",
                       fix="move it to an entry of attributors or [[evaluate]]")
                for key in ("data", "model", "mask") if getattr(self, key).label is not None]

    @field_validator("name")
    @classmethod
    def _path_safe_name(cls, name: str) -> str:
        return check_slug(name)

    @field_validator("evaluate")
    @classmethod
    def _unique_eval_labels(cls, specs: list[EvalSpec]) -> list[EvalSpec]:
        keys = [s.key for s in specs]
        for key in keys:
            check_slug(key)
        if len(set(keys)) != len(keys):
            raise ValueError(f"evaluation set labels must be unique, got {keys}; set `label`")
        return specs

    @field_validator("attributors")
    @classmethod
    def _unique_labels(cls, specs: list[ComponentSpec]) -> list[ComponentSpec]:
        keys = [s.key for s in specs]
        for key in keys:
            check_slug(key)
        reserved = [k for k in keys if k == "standard"]
        if reserved:
            raise ValueError("'standard' names the standard phase; give that branch a `label`")
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
        key = dotted_loc(e["loc"]) or "(top level)"
        msg = e["msg"]
        unused = unused_lines(e, dotted_loc(e["loc"]) + "." if e["loc"] else "")
        if unused is not None:
            lines += [f"  {line}" for line in unused]
            continue
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


def parse_config(data: dict[str, Any], source: str = "<config>", *,
                 written_by_ada: bool = False) -> ExperimentConfig:  # fmt: skip
    """Validate a config mapping; errors name ``source`` and each offending dotted key.

    A setting without effect (``used_when``, :mod:`ada_core.fieldtags`) is refused, except
    with ``written_by_ada``: a run's ``config.json`` lists every value, the inactive ones too.
    """
    try:
        return ExperimentConfig.model_validate(data, context=ALLOW_UNUSED if written_by_ada else None)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source, ExperimentConfig)) from None


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: the TOML file, or None for the defaults.
        overrides: ``KEY=VALUE`` strings (:func:`apply_overrides`), applied in order.

    Raises:
        ConfigError: naming the file (missing, unreadable, not TOML), the override or the
            dotted key of an invalid value.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder; give the path of a TOML config file") from None
        except PermissionError:
            raise ConfigError(f"{path}: permission denied; make the file readable") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if overrides:
        data = apply_overrides(data, list(overrides), ExperimentConfig().model_dump(mode="json"))
        source += " (with --set overrides)"
    try:
        return parse_config(data, source)
    except ConfigError as e:
        if overrides and "is set but" in str(e):
            raise ConfigError(f"{e}\n  (--set '~KEY' removes a KEY that the file sets)") from None
        raise


def toml_lines(data: dict[str, Any], prefix: str = "", *, show_none: bool = False) -> list[str]:
    """TOML lines of JSON-like ``data``. TOML has no null: a None value is left out (an absent
    key means the default), or with ``show_none`` written as a comment ``# key: not set``."""
    scalars, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        elif value is None:
            if show_none:
                scalars.append(f"# {key}: not set (None)")
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    lines = list(scalars)
    for key, value in tables:
        lines += ["", f"[{prefix}{key}]", *toml_lines(value, f"{prefix}{key}.", show_none=show_none)]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{prefix}{key}]]",
                      *toml_lines(item, f"{prefix}{key}.", show_none=show_none)]  # fmt: skip
    return lines


def to_toml(config: ExperimentConfig, header: str = "") -> str:
    """The config as TOML that :func:`load_config` reads back to an equal config (a field
    without effect under the config's choices is left out: it holds its default)."""
    body = "\n".join(toml_lines(active_data(config))).strip() + "\n"
    return (f"# {header}\n" if header else "") + body
