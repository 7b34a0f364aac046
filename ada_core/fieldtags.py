"""Which results a configuration field changes, declared once on the field.

Every field of the configuration models carries (or inherits from the field that holds it) one
tag in its ``json_schema_extra``:

- ``"standard"``: changes the standard phase, hence every branch after it (data, model,
  augmentation, optimisation, checkpoint rule);
- ``"branch"``: changes a branch's training but not the standard phase (its attributor, the
  mask builder, the ADA schedule);
- ``"eval"``: changes only how finished checkpoints are scored (robustness set, probes, extra
  evaluation sets); re-scoring needs no retraining;
- ``"none"``: changes no result (where files go, batch sizes of evaluation, caching, display).

The run keys (:mod:`ada_core.engine.keys`), the refusal of a changed configuration and the
configuration reference are all computed from these tags: there is no second list to keep in
step.

A field that matters only under another field's choice also declares when it applies:
``used_when("test", "fraction")`` (or ``used_unless("cycles", 0)``; several with :func:`tags`).
A user who sets such a field (in the file, through ``--set`` or as a Python argument: pydantic's
``model_fields_set``) while its condition is false gets it refused, naming what is set, why it
has no effect and the two ways to fix it, instead of a setting silently without effect. Every
configuration model, component ``Config`` included, derives from :class:`Settings`, whose one
validator does the check; the configuration reference shows each condition under its field.
The condition's key is a field of the same model, or a dotted key from the top of the
configuration (``"augment.enabled"``; core models only). The tags and their records live in
:mod:`ada_core._conditions`; this module re-exports them and does the checking.

A rule that no key = value condition states (``padding`` matters only while some transform
moves pixels; a parameter that only some architectures take) is declared in words with
:func:`used_if` and checked by the model's :meth:`Settings._inactive`, or, where only the
registry or the run knows it, where that is known (``train.control_steps`` by the registry,
``train.wait_timeout_h`` when the processes start); the message has the same form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ada_core._conditions import (
    MASK_DEFAULT_USES,
    RUN_USES,
    Condition,
    Unused,
    field_conditions,
    field_rule,
    field_uses,
    resolve,
    show,
    tags,
    used_for,
    used_if,
    used_unless,
    used_when,
)

__all__ = [
    "MASK_DEFAULT_USES",
    "RUN_USES",
    "TAGS",
    "Condition",
    "Settings",
    "Tag",
    "Unused",
    "active_data",
    "dotted_loc",
    "affects",
    "field_conditions",
    "field_rule",
    "field_tag",
    "field_uses",
    "tagged_settings",
    "tags",
    "unused_settings",
    "unused_lines",
    "untagged_fields",
    "used_for",
    "used_if",
    "used_unless",
    "used_when",
]

#: Validation context that turns the check off, for records ADA wrote itself (``config.json``
#: of a run, which lists every value, the inactive ones included).
ALLOW_UNUSED = {"unused_settings": "allow"}

Tag = Literal["standard", "branch", "eval", "none"]
TAGS: tuple[str, ...] = get_args(Tag)


def affects(tag: Tag) -> dict[str, str]:
    """``json_schema_extra`` for a field: ``Field(..., json_schema_extra=affects("eval"))``."""
    if tag not in TAGS:
        raise ValueError(f"unknown field tag {tag!r}; expected one of {TAGS}")
    return {"affects": tag}


def field_tag(field: FieldInfo) -> Tag | None:
    """The tag a field declares itself, or None when it inherits its parent's."""
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        tag = extra.get("affects")
        if tag is not None:
            return tag  # type: ignore[return-value]
    return None


def _sub_model(value: Any) -> BaseModel | None:
    return value if isinstance(value, BaseModel) else None


def tagged_settings(model: BaseModel, tag: Tag, inherited: Tag | None = None) -> dict[str, Any]:
    """The values of every field of ``model`` whose effective tag is ``tag``, as JSON data.

    A field's effective tag is its own or, when it declares none, that of the field holding
    it. Sub-models are walked; lists and dicts are leaves (taken whole).

    Args:
        model: a configuration model instance.
        tag: which fields to collect.
        inherited: the tag of the field that holds ``model`` (None at the top).

    Returns:
        A nested dict with only the matching fields (empty sub-dicts dropped).
    """
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        own = field_tag(field) or inherited
        value = getattr(model, name)
        sub = _sub_model(value)
        if sub is not None:
            nested = tagged_settings(sub, tag, own)
            if nested:
                out[name] = nested
        elif own == tag:
            out[name] = model.__pydantic_serializer__.to_python(
                model, mode="json", include={name}
            )[name]
    return out


def untagged_fields(model_cls: type[BaseModel], prefix: str = "", inherited: bool = False) -> list[str]:
    """Dotted names of fields with no effective tag (a configuration model must have none)."""
    missing: list[str] = []
    for name, field in model_cls.model_fields.items():
        own = field_tag(field) is not None or inherited
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            missing += untagged_fields(ann, f"{prefix}{name}.", own)
        elif not own:
            missing.append(prefix + name)
    return missing


def _first_false(model: BaseModel, root: BaseModel | None, field: FieldInfo,
                 absolute: bool) -> tuple[Condition, Any] | None:  # fmt: skip
    for c in field_conditions(field):
        if c.absolute != absolute:
            continue
        holder = root if c.absolute else model
        if holder is None:
            continue
        value = resolve(holder, c.key)
        if not c.holds(value):
            return c, value
    return None


def _children(model: BaseModel) -> list[tuple[str, BaseModel]]:
    out: list[tuple[str, BaseModel]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.append((name, value))
        elif isinstance(value, (list, tuple)):
            out += [(f"{name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, BaseModel)]
    return out


def _set_fields(model: BaseModel) -> list[tuple[str, FieldInfo]]:
    """The fields the user set, in the model's order."""
    return [(n, f) for n, f in type(model).model_fields.items() if n in model.model_fields_set]


def unused_settings(model: BaseModel) -> list[Unused]:
    """The fields of ``model`` that were set (``model_fields_set``) but have no effect.

    Conditions on a field of the same model are checked here; conditions on a key from the
    top of the configuration only when ``model`` is the top (:attr:`Settings.settings_root`),
    over every model under it.
    """
    found: list[Unused] = []
    for name, field in _set_fields(model):
        hit = _first_false(model, None, field, absolute=False)
        if hit:
            found.append(Unused(name, *hit))
    if getattr(type(model), "settings_root", False):

        def walk(node: BaseModel, prefix: str) -> None:
            for name, field in _set_fields(node):
                hit = _first_false(node, model, field, absolute=True)
                if hit:
                    found.append(Unused(prefix + name, *hit))
            for name, child in _children(node):
                walk(child, f"{prefix}{name}.")

        walk(model, "")
    return found


def active_data(model: BaseModel, root: BaseModel | None = None) -> dict[str, Any]:
    """``model`` as JSON data without the fields that have no effect (their condition is
    false; they hold their default, else they would have been refused), so that the data
    reads back to an equal model however the fields were set. A field whose
    :func:`used_if` rule only the registry or the run's start can check is kept only where it
    was set (written otherwise, a file for one process would refuse it under torchrun)."""
    root = root if root is not None else model
    data = model.model_dump(mode="json")
    ruled = {u.field for u in model._inactive()} if isinstance(model, Settings) else set()
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        inactive = any(
            not c.holds(resolve(root if c.absolute else model, c.key))
            for c in field_conditions(field)
            if not c.absolute or getattr(type(root), "settings_root", False)
        )
        rule = field_rule(field)
        if rule is not None and rule[1] != "config":
            # known to the registry or at the run's start only: kept where the user set it
            inactive = inactive or name not in model.model_fields_set
        if inactive or name in ruled:
            data.pop(name, None)
        elif isinstance(value, BaseModel):
            data[name] = active_data(value, root)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, BaseModel) for v in value):
            data[name] = [active_data(v, root) if isinstance(v, BaseModel) else d
                          for v, d in zip(value, data[name], strict=True)]  # fmt: skip
    return data


def dotted_loc(loc: Sequence[Any]) -> str:
    """``("evaluate", 0, "split")`` -> ``"evaluate[0].split"``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def unused_lines(error: Any, prefix: str) -> list[str] | None:
    """One line per setting without effect of a pydantic error entry (None for another
    error), each key under ``prefix`` (where the model that reported it sits)."""
    if error["type"] != "unused_setting":
        return None
    unused: list[Unused] = error["ctx"]["unused"]
    return [u.message(prefix) for u in unused]


class Settings(BaseModel):
    """Base of every configuration model: unknown keys are errors, instances are frozen, and a
    field set while it has no effect (its :func:`used_when` condition is false) is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: True for the top of the configuration, where dotted condition keys are resolved.
    settings_root: ClassVar[bool] = False

    def _inactive(self) -> list[Unused]:
        """The fields, set or not, whose :func:`used_if` rule (``checked="config"``) is false;
        a model with such fields overrides this (``why`` and ``fix`` name keys under
        ``{prefix}``). The validator refuses those that were set; records leave them all out."""
        return []

    def _unused_below(self) -> list[Unused]:
        """Settings of the models under this one that have no effect where they sit (a rule
        of the holder, not of the field's own model); ``field`` dotted from here."""
        return []

    @model_validator(mode="after")
    def _refuse_unused(self, info: ValidationInfo) -> Settings:
        context = info.context if isinstance(info.context, dict) else {}
        if context.get("unused_settings") == "allow":
            return self
        extra = [u for u in self._inactive() if u.field in self.model_fields_set]
        for u in extra:
            rule = field_rule(type(self).model_fields[u.field])
            if rule is None or rule[1] != "config":
                raise TypeError(f"{type(self).__name__}._inactive reports {u.field!r}, which "
                                "declares no used_if(..., checked='config') rule")  # fmt: skip
        unused = unused_settings(self) + extra + self._unused_below()
        if unused:
            raise PydanticCustomError(
                "unused_setting", "{text}",
                {"text": "; ".join(u.message() for u in unused), "unused": unused},
            )
        return self
