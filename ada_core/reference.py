"""The configuration reference, generated from the pydantic models and their field tags.

``ada config reference > docs/config.md`` writes it; a test keeps the committed file current.
Sections are found by walking :class:`~ada_core.config.ExperimentConfig` (every sub-model and
list of sub-models becomes a section), so no section can be forgotten; each field shows which
results it changes (its tag, see :mod:`ada_core.fieldtags`).
"""

from __future__ import annotations

import inspect
import typing
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from ada_core.config import ExperimentConfig
from ada_core.fieldtags import field_conditions, field_rule, field_tag
from ada_core.registry import Registry

__all__ = ["config_reference"]

_TAG_TEXT = {
    "standard": "standard phase",
    "branch": "branches",
    "eval": "scoring",
    "none": "nothing",
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("ada_core.config.", "").replace("|", "\\|")


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        value = [getattr(v, "name", "...") for v in value]
    elif isinstance(value, PurePath):
        value = str(value)
    return f"`{value!r}`"


def _sub_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (arg,) = typing.get_args(annotation) or (None,)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, True
    return None, False


def _applies(field: Any, prefix: str) -> str:
    """``Only when `data.split.test = 'fraction'`; set otherwise, it is refused.``"""
    parts = [f"`{c.text(prefix)}`" for c in field_conditions(field)]
    rule = field_rule(field)
    if rule is not None:
        parts.append(rule[0])
    if not parts:
        return ""
    when = " (checked when the run starts)" if rule is not None and rule[1] == "run" else ""
    return f" **Only when {' and '.join(parts)}**; set otherwise, it is refused{when}."


def _table(model: type[BaseModel], inherited: str | None, tags: bool = True,
           prefix: str = "") -> list[str]:  # fmt: skip
    head = "| key | type | default | changes | description |" if tags else "| key | type | default | description |"
    lines = [head, "|---|---|---|---|---|" if tags else "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        sub, is_list = _sub_model(field.annotation)
        if sub is not None and not is_list and issubclass(sub, BaseModel) and sub.model_fields:
            if name not in ("model", "mask"):  # component specs stay rows; tables get sections
                continue
        desc = (field.description or "") + _applies(field, prefix)
        desc = desc.replace("|", "\\|").replace("\n", " ")
        cells = [f"`{name}`", _type_name(field.annotation), _default(field)]
        if tags:
            tag = field_tag(field) or inherited
            cells.append(_TAG_TEXT.get(tag or "", "(inherits)"))
        lines.append("| " + " | ".join([*cells, desc]) + " |")
    return lines


def _sections(model: type[BaseModel], prefix: str, inherited: str | None) -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        sub, is_list = _sub_model(field.annotation)
        if sub is None or name in ("model", "mask", "attributors"):
            continue
        tag = field_tag(field) or inherited
        dotted = f"{prefix}{name}"
        title = f"[[{dotted}]]" if is_list else f"[{dotted}]"
        doc = inspect.cleandoc(sub.__doc__ or "") + _applies(field, prefix).replace(
            " it is", " the table is")
        where = f"{dotted}."
        out += ["", f"## `{title}`", "", doc, "", *_table(sub, tag, prefix=where)]
        out += _sections(sub, f"{dotted}.", tag)
    return out


def _component_doc(cls: type) -> list[str]:
    doc = inspect.cleandoc(cls.__doc__ or "")
    return [doc, ""] if doc else []


def config_reference(registry: Registry) -> str:
    """Markdown: every configuration section, then every registered component's params.

    The *changes* column says which results a field changes: the standard phase (and so
    every branch after it), the branches only, only the scoring of finished checkpoints
    (no retraining), or nothing. A changed setting under an existing run name is refused for
    the jobs it changes (``--force`` keeps their old results aside).
    """
    lines = [
        "# Configuration reference",
        "",
        "Generated by `ada config reference` from the field descriptions; do not edit by hand.",
        "",
        "The *changes* column says which results a field changes: the standard phase (and so "
        "every branch after it), the branches only, only the scoring of finished checkpoints "
        "(re-scored without retraining), or nothing. Under an existing run name, a changed "
        "setting is refused for the jobs it changes unless `--force` (which keeps the old "
        "results aside in `RUN/.superseded/`).",
        "",
        "A field marked **Only when ...** has an effect only under that choice of another "
        "field. Set while its condition is false (in the file, with `--set` or as a Python "
        "argument) it is refused with exit status 2, naming what is set, why it has no effect "
        "and the two ways to fix it, never silently ignored; `--set '~KEY'` removes a KEY the "
        "file sets. A field the config does not set is never refused.",
        "",
        "Where the condition depends on more than the config, it is checked where it is known:",
        "",
        "- **The device.** `train.amp`, `train.channels_last` and `train.fused_adam` act only "
        "on CUDA: with `train.device = 'cpu'` a set one is refused (e.g. "
        "`ada config validate configs/paper.toml --set train.device=cpu` names `train.amp` and "
        "`train.channels_last`; fix with `--set '~train.amp'` or a CUDA device). With "
        "`train.device = 'auto'` on a machine without CUDA they are *not* refused but named "
        "in a warning by `ada config validate` and at the start of the run: 'auto' asks ADA "
        "to adapt to the machine, so one file (such as configs/paper.toml) runs on a GPU "
        "server as it is and is tried on a laptop without editing; the keys change nothing "
        "on the CPU, and the run's keys record the device type, so nothing is mixed up. "
        "`train.compile` is not CUDA-only: it compiles (and changes results) on the CPU too.",
        "- **The components.** `train.control_steps` is the default of the `none` control's "
        "`params.steps`; it is refused (when the registry checks the components, so by "
        "`ada config validate` and `ada compare` alike) where no branch takes it: no `none` "
        "control, or every one sets its own `steps`.",
        "- **How the run was started.** `train.ddp` acts only under torchrun and "
        "`train.wait_timeout_h` only with several processes (torchrun or `--shard`). The same "
        "file runs under torchrun and alone, so only the run's start can tell: `ada compare` "
        "/ `ada train` refuse a set one there, before anything is written, with the same "
        "message; `ada config validate` cannot know and accepts it. A run's own `config.toml` "
        "and `config.json` list these keys only where the user set them (a `config.toml` of an "
        "older ADA lists every key: remove these two with `--set '~KEY'` to run it alone).",
        "",
        "`train.threads` (default 2) is torch's CPU thread count in every process that trains "
        "or scores (alone, each torchrun rank, each `--shard`), whatever the machine or "
        "`OMP_NUM_THREADS`: on the CPU the thread count changes how sums are split and so the "
        "last bits of every result, and a fixed default makes a run bit-reproducible on "
        "another machine. It is part of every job's key (it changes the standard phase), so "
        "run folders written before it existed report their jobs as changed: rerun them, or "
        "keep their results with `--force`. Each job's `done.json` and the summary's "
        "provenance record the count that was used.",
        "",
        "## Top level",
        "",
        *_table(ExperimentConfig, None),
        "",
        "`data`, `model`, `mask`, each entry of `attributors` and of `evaluate` are component "
        "specs: `name` (a registry key, see below) and `params` (that component's fields); an "
        "entry of `attributors` or `evaluate` takes an optional `label` (a path-safe name), "
        "which is refused on `data`, `model` and `mask`. A parameter that applies only under "
        "another choice says so under it (**Only when ...**); set otherwise, `ada config "
        "validate` and `ada compare` refuse it. The `none` attributor is the keep-training "
        "control; its only parameter is `steps` (`'epochs'` or `'matched'`).",
        *_sections(ExperimentConfig, "", None),
    ]
    titles = {"attributor": "Attributors", "mask": "Mask builders", "dataset": "Data sets",
              "model": "Models"}  # fmt: skip
    for kind, section in registry.sections.items():
        lines += ["", f"## {titles[kind]} (`params`)"]
        for entry in section:
            cls = entry.cls
            lines += ["", f"### `{cls.name}` ({entry.plugin.distribution})", ""]
            lines += _component_doc(cls)
            lines += _table(cls.Config, None, tags=False) if cls.Config.model_fields else ["No parameters."]
    return "\n".join(lines) + "\n"
