"""When a configuration field applies: the ``used_when`` / ``used_unless`` / ``used_if`` tags,
their :class:`Condition` and the :class:`Unused` record of a field set while it has no effect.

Declared on a field through :mod:`ada_core.fieldtags` (which re-exports everything here);
checked there by :class:`~ada_core.fieldtags.Settings`, by the registry or at a run's start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = [
    "MASK_DEFAULT_USES",
    "RUN_USES",
    "Condition",
    "Unused",
    "field_conditions",
    "field_rule",
    "field_uses",
    "resolve",
    "show",
    "tags",
    "used_for",
    "used_if",
    "used_unless",
    "used_when",
]


def _plain(value: Any) -> Any:
    """JSON-like form for comparison and display (tuples as lists, models as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def show(value: Any) -> str:
    """A value as a user writes it: ``'none'``, ``true``, ``0``, ``[]``."""
    value = _plain(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        try:
            return json.dumps(value)
        except TypeError:
            return repr(value)
    return repr(value)


@dataclass(frozen=True)
class Condition:
    """When a field applies: ``key`` has one of ``values`` (or, with ``unless``, none of them).

    ``key`` is a field of the same model, or (with a dot) a key from the top of the
    configuration.
    """

    key: str
    values: tuple[Any, ...]
    unless: bool = False

    @property
    def absolute(self) -> bool:
        return "." in self.key

    def holds(self, value: Any) -> bool:
        value = _plain(value)
        # True == 1 in Python; a condition on a bool never matches a number, nor the reverse.
        hit = any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values)
        return hit != self.unless

    def wanted(self, key: str) -> str:
        """``set KEY = 'a' or 'b'`` / ``set KEY to a value other than 0``."""
        shown = " or ".join(show(v) for v in self.values)
        return f"set {key} to a value other than {shown}" if self.unless else f"set {key} = {shown}"

    def text(self, prefix: str = "") -> str:
        """``test = 'fraction'`` / ``cycles is not 0``, the key under ``prefix``."""
        key = self.key if self.absolute else prefix + self.key
        shown = " or ".join(show(v) for v in self.values)
        return f"{key} is not {shown}" if self.unless else f"{key} = {shown}"


def _condition(key: str, values: tuple[Any, ...], unless: bool) -> dict[str, Any]:
    if not values:
        raise ValueError(f"used_when({key!r}) needs at least one value")
    return {"used_when": [{"key": key, "values": [_plain(v) for v in values], "unless": unless}]}


def used_when(key: str, *values: Any) -> dict[str, Any]:
    """``json_schema_extra`` of a field that applies only while ``key`` is one of ``values``.

    ``Field(0.2, json_schema_extra=used_when("test", "fraction"))``; with a tag:
    ``affects("eval") | used_when("robustness", True)``; several conditions: :func:`tags`.
    """
    return _condition(key, values, unless=False)


def used_unless(key: str, *values: Any) -> dict[str, Any]:
    """``json_schema_extra`` of a field that applies only while ``key`` is none of ``values``
    (``used_unless("cycles", 0)``)."""
    return _condition(key, values, unless=True)


def used_if(text: str, checked: Literal["config", "registry", "run"] = "config") -> dict[str, Any]:
    """``json_schema_extra`` of a field whose condition is a rule in words (``text``, shown in
    the configuration reference after "Only when"), checked by the model's
    :meth:`Settings._inactive` (``checked="config"``), by the registry when the components are
    known (``"registry"``) or when the run starts (``"run"``: how the processes were started)."""
    if not text:
        raise ValueError("used_if needs the rule in words")
    return {"used_if": {"text": text, "checked": checked}}


#: What a run uses a component's parameter for, as :func:`used_for` names it, and the rule in
#: words: the first three are a mask builder's (a mask parameter without ``used_for`` serves
#: all three), ``cuda`` any component's (a parameter that acts only on a GPU).
RUN_USES: dict[str, str] = {
    "erase": "a branch erases (an attributor other than the `none` control) with `train.cycles` "
             "not 0",
    "robustness_square": "the robustness square takes its side from the builder "
                         "(`train.robustness = true`, `train.robustness_size` unset)",
    "context_fill": "the context probe fills with the builder's fill value "
                    "(`train.context_margin_mm` set)",
    "cuda": "`train.device` is not 'cpu'",
}  # fmt: skip
#: The uses a mask builder's parameter without ``used_for`` serves.
MASK_DEFAULT_USES = ("erase", "robustness_square", "context_fill")


def used_for(*uses: str) -> dict[str, Any]:
    """``json_schema_extra`` of a component's parameter that applies only while the run uses
    it for one of ``uses`` (keys of :data:`RUN_USES`): a mask builder's ``used_for("erase")``;
    the size that is also the robustness square's: ``used_for("erase", "robustness_square")``;
    an attributor's bf16 switch: ``used_for("cuda")``. The registry checks it (a
    :func:`used_if` rule with ``checked="registry"``); a mask parameter without it applies
    whenever the run uses the builder at all (:data:`MASK_DEFAULT_USES`)."""
    unknown = [u for u in uses if u not in RUN_USES]
    if not uses or unknown:
        raise ValueError(f"used_for needs uses from {sorted(RUN_USES)}, got {list(uses)}")
    rule = used_if(", or ".join(RUN_USES[u] for u in uses), "registry")
    rule["used_if"]["uses"] = list(uses)
    return rule


def field_uses(field: FieldInfo) -> tuple[str, ...] | None:
    """The :func:`used_for` uses of a component's parameter, or None when it declares none."""
    extra = field.json_schema_extra
    rule = extra.get("used_if") if isinstance(extra, dict) else None
    uses = rule.get("uses") if isinstance(rule, dict) else None
    return None if uses is None else tuple(uses)


def field_rule(field: FieldInfo) -> tuple[str, str] | None:
    """A field's :func:`used_if` rule as ``(text, checked)``, or None."""
    extra = field.json_schema_extra
    rule = extra.get("used_if") if isinstance(extra, dict) else None
    return None if rule is None else (rule["text"], rule["checked"])  # type: ignore[index]


def tags(*parts: dict[str, Any]) -> dict[str, Any]:
    """Merge ``affects(...)``, ``used_when(...)`` and ``used_unless(...)``; every condition
    must hold for the field to apply."""
    out: dict[str, Any] = {}
    for part in parts:
        for name, value in part.items():
            if name == "used_when":
                out.setdefault("used_when", []).extend(value)
            elif name in out:
                raise ValueError(f"field tag {name!r} given twice")
            else:
                out[name] = value
    return out


def field_conditions(field: FieldInfo) -> list[Condition]:
    """The conditions a field declares (every one must hold for it to apply)."""
    extra = field.json_schema_extra
    if not isinstance(extra, dict):
        return []
    return [Condition(c["key"], tuple(c["values"]), bool(c.get("unless", False)))
            for c in extra.get("used_when", ())]  # type: ignore[union-attr]  # fmt: skip


def resolve(model: BaseModel, key: str) -> Any:
    """The value at dotted ``key`` under ``model`` (KeyError when there is none)."""
    value: Any = model
    for part in key.split("."):
        if not isinstance(value, BaseModel) or part not in type(value).model_fields:
            raise KeyError(key)
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class Unused:
    """A field that is set but has no effect: ``field`` (dotted from the model that reports
    it), the first ``condition`` that is false, and that condition's key's ``value``; or, for
    a :func:`used_if` rule (``condition`` None), ``why`` it has no effect and the ``fix`` that
    gives it one, where ``{prefix}`` stands for where the reporting model sits."""

    field: str
    condition: Condition | None
    value: Any = None
    why: str = ""
    fix: str = ""

    def message(self, prefix: str = "") -> str:
        """``data.split.test_fraction is set but data.split.test = 'none'; set ... to use
        it, or remove data.split.test_fraction`` (``prefix``: where the reporting model sits)."""
        field = prefix + self.field
        c = self.condition
        if c is None:
            why, fix = (t.replace("{prefix}", prefix) for t in (self.why, self.fix))
            return f"{field} is set but {why}; {fix} to use it, or remove {field}"
        key = c.key if c.absolute else prefix + c.key
        return (f"{field} is set but {key} = {show(self.value)}; {c.wanted(key)} to use it, "
                f"or remove {field}")  # fmt: skip
