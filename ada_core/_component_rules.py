"""Settings without effect that only the registry can see: which components a run has.

:meth:`ada_core.registry.Registry.validate_experiment` calls :func:`unused_by_components`
after every component's parameters validated, so ``ada config validate`` and ``ada compare``
refuse the same things, with the message of :class:`~ada_core.fieldtags.Unused`:

- a mask builder's parameter applies only while the run uses the builder for what the
  parameter serves (:func:`~ada_core.fieldtags.used_for`): erasing (a branch whose attributor
  erases, with ``train.cycles`` not 0), the robustness square's side (``train.robustness``
  with ``train.robustness_size`` unset) or the context probe's fill
  (``train.context_margin_mm`` set). A parameter that declares no use, and ``mask`` itself,
  apply while the run uses the builder for anything;
- a branch's parameters (``attributors[i].params``) apply only while ``train.cycles`` is not
  0 (no cycle, no branch training);
- ``train.control_steps`` only where a branch takes its default from it (the ``none``
  control without ``params.steps``), with ``train.cycles`` not 0.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ada_core.fieldtags import MASK_USES, Unused, active_data, field_uses

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["active_mask_params", "mask_uses", "unused_by_components"]


def mask_uses(config: ExperimentConfig, registry: Registry) -> dict[str, bool]:
    """Which of :data:`~ada_core.fieldtags.MASK_USES` the run has."""
    t = config.train
    return {
        "erase": t.cycles > 0 and any(registry.attributors.get(s.name).erases
                                      for s in config.attributors),
        "robustness_square": t.robustness and t.robustness_size is None,
        "context_fill": t.context_margin_mm is not None,
    }  # fmt: skip


def active_mask_params(params: BaseModel, config: ExperimentConfig,
                       registry: Registry) -> dict[str, Any]:  # fmt: skip
    """The mask builder's validated ``params`` as JSON data: the parameters that apply in this
    run (set, or serving a use the run has), each with its value (``ada config show``)."""
    used = mask_uses(config, registry)
    kept = active_data(params)
    full = params.model_dump(mode="json")
    fields = type(params).model_fields
    return {n: v for n, v in full.items()
            if n in kept or any(used[u] for u in field_uses(fields[n]) or ())}  # fmt: skip


def _why_not(use: str, config: ExperimentConfig) -> tuple[str, str]:
    """Why the run does not use its mask builder for ``use``, and the fix that makes it."""
    t = config.train
    if use == "erase":
        if t.cycles == 0:
            return "train.cycles = 0 (no branch trains)", "set train.cycles to a value other than 0"
        names = ", ".join(repr(s.key) for s in config.attributors) or "none"
        return (f"no branch erases (attributors: {names}; the `none` control erases nothing)",
                "add an attributor that erases (e.g. 'gradcam' or 'random') to attributors")
    if use == "robustness_square":
        if not t.robustness:
            return "train.robustness = false", "set train.robustness = true"
        return (f"train.robustness_size = {t.robustness_size} sets the robustness square",
                "remove train.robustness_size")  # fmt: skip
    return "train.context_margin_mm is not set (no context probe)", "set train.context_margin_mm"


def _unused_mask(config: ExperimentConfig, registry: Registry) -> list[Unused]:
    used = mask_uses(config, registry)
    spec = config.mask
    fields = registry.masks.get(spec.name).Config.model_fields
    found = []
    for name in spec.params:
        uses = field_uses(fields[name]) or tuple(MASK_USES)
        if not any(used[u] for u in uses):
            whys, fixes = zip(*(_why_not(u, config) for u in uses), strict=True)
            found.append(Unused(f"mask.params.{name}", None, why=" and ".join(whys), fix=fixes[0]))
    if not any(used.values()) and "name" in spec.model_fields_set:
        whys, fixes = zip(*(_why_not(u, config) for u in MASK_USES), strict=True)
        found.append(Unused("mask", None, why=" and ".join(whys), fix=fixes[0]))
    return found


def _unused_control_steps(config: ExperimentConfig, registry: Registry) -> Unused | None:
    """``train.control_steps`` when it is set but no branch takes it: the branches' resolved
    parameters are the same under its other value (only a control that takes its default
    from it, the ``none`` control without ``params.steps``, differs), or no branch trains."""
    t = config.train
    if "control_steps" not in t.model_fields_set:
        return None
    if t.cycles == 0:
        return Unused("train.control_steps", None, why="train.cycles = 0 (no branch trains)",
                      fix="set train.cycles to a value other than 0")  # fmt: skip
    choices = typing.get_args(type(t).model_fields["control_steps"].annotation)
    flipped = next(c for c in choices if c != t.control_steps)
    other = t.model_copy(update={"control_steps": flipped})
    for spec in config.attributors:
        cls = registry.attributors.get(spec.name)
        params = registry.attributors.config(spec.name, spec.params)
        if cls.resolve_config(params, t) != cls.resolve_config(params, other):
            return None
    names = ", ".join(repr(s.key) for s in config.attributors) or "none"
    return Unused("train.control_steps", None,
                  why=f"no branch takes it (attributors: {names}; only the `none` control "
                      "without params.steps does)",
                  fix='add {name = "none"} to attributors')  # fmt: skip


def unused_by_components(config: ExperimentConfig, registry: Registry) -> list[Unused]:
    """Every setting of ``config`` without effect that the registry's components reveal
    (fields dotted from the top of the configuration)."""
    found: list[Unused] = []
    if config.train.cycles == 0:
        found += [Unused(f"attributors[{i}].params.{name}", None,
                         why="train.cycles = 0 (no branch trains)",
                         fix="set train.cycles to a value other than 0")
                  for i, spec in enumerate(config.attributors) for name in spec.params]  # fmt: skip
    found += _unused_mask(config, registry)
    steps = _unused_control_steps(config, registry)
    return found + ([steps] if steps else [])
