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
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["TAGS", "Tag", "affects", "field_tag", "tagged_settings", "untagged_fields"]

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
