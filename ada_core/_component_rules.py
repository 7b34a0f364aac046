"""Settings without effect that only the registry can see: which components a run has.

:meth:`ada_core.registry.Registry.validate_experiment` calls :func:`unused_by_components`
after every component's parameters validated, so ``ada config validate`` and ``ada compare``
refuse the same things, with the message of :class:`~ada_core.fieldtags.Unused`:

- a mask builder's parameter applies only while the run uses the builder for what the
  parameter serves (:func:`~ada_core.fieldtags.used_for`): erasing (a branch whose attributor
  erases, with ``train.cycles`` not 0), the robustness square's side (``train.robustness``
  with ``train.robustness_size`` unset) or the context probe's fill
  (``train.context_margin_mm`` set). A parameter that declares no use, and ``mask`` itself,
  apply while the run uses the builder for anything; any component's parameter that acts on
  a GPU only (``used_for("cuda")``, an attributor's ``amp``) applies with ``train.device``
  not 'cpu';
- ``train.augment_ada_images`` and ``train.save_ada_images`` only while a branch erases (the
  ``none`` control has no ADA images);
- a branch's parameters (``attributors[i].params``) apply only while ``train.cycles`` is not
  0 (no cycle, no branch training);
- ``train.control_steps`` only where a branch takes its default from it (the ``none``
  control without ``params.steps``), with ``train.cycles`` not 0.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ada_core.fieldtags import MASK_DEFAULT_USES, Unused, active_data, field_uses

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.registry import Registry

__all__ = ["active_params", "run_uses", "unused_by_components"]


def run_uses(config: ExperimentConfig, registry: Registry) -> dict[str, bool]:
    """Which of :data:`~ada_core.fieldtags.RUN_USES` the run has."""
    t = config.train
    return {
        "erase": t.cycles > 0 and any(registry.attributors.get(s.name).erases
                                      for s in config.attributors),
        "robustness_square": t.robustness and t.robustness_size is None,
        "context_fill": t.context_margin_mm is not None,
        "cuda": t.device != "cpu",
    }  # fmt: skip


def active_params(params: BaseModel, config: ExperimentConfig,
                  registry: Registry) -> dict[str, Any]:  # fmt: skip
    """A component's validated ``params`` as JSON data: the parameters that apply in this run
    (set, or serving a use the run has), each with its value (``ada config show``)."""
    used = run_uses(config, registry)
    kept = active_data(params)
    full = params.model_dump(mode="json")
    fields = type(params).model_fields
    return {n: v for n, v in full.items()
            if n in kept or any(used[u] for u in field_uses(fields[n]) or ())}  # fmt: skip


def _why_not(use: str, config: ExperimentConfig) -> tuple[str, str]:
    """Why the run does not use a parameter for ``use``, and the fix that makes it."""
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
    if use == "cuda":
        return "train.device = 'cpu'", "set train.device to a value other than 'cpu'"
    return "train.context_margin_mm is not set (no context probe)", "set train.context_margin_mm"


def _unused(field: str, uses: Sequence[str], config: ExperimentConfig) -> Unused:
    whys, fixes = zip(*(_why_not(u, config) for u in uses), strict=True)
    return Unused(field, None, why=" and ".join(whys), fix=fixes[0])


def _unused_params(config: ExperimentConfig, registry: Registry) -> list[Unused]:
    """Every component's set parameters that serve no use the run has (:func:`used_for`; a
    mask parameter without it serves :data:`~ada_core.fieldtags.MASK_DEFAULT_USES`), and
    ``mask`` itself when the run uses the builder for nothing."""
    used = run_uses(config, registry)
    specs = [("dataset", config.data, "data"), ("model", config.model, "model"),
             ("mask", config.mask, "mask")]  # fmt: skip
    specs += [("attributor", sp, f"attributors[{i}]") for i, sp in enumerate(config.attributors)]
    specs += [("dataset", sp, f"evaluate[{i}]") for i, sp in enumerate(config.evaluate)]
    found = []
    for kind, spec, where in specs:
        fields = registry.sections[kind].get(spec.name).Config.model_fields
        for name in spec.params:
            uses = field_uses(fields[name]) or (MASK_DEFAULT_USES if kind == "mask" else ())
            if uses and not any(used[u] for u in uses):
                found.append(_unused(f"{where}.params.{name}", uses, config))
    if not any(used[u] for u in MASK_DEFAULT_USES) and "name" in config.mask.model_fields_set:
        found.append(_unused("mask", MASK_DEFAULT_USES, config))
    t = config.train
    if t.cycles > 0 and not used["erase"]:  # (cycles = 0: the fields' own tags refuse them)
        found += [_unused(f"train.{k}", ("erase",), config)
                  for k in ("augment_ada_images", "save_ada_images") if k in t.model_fields_set]
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
    found += _unused_params(config, registry)
    steps = _unused_control_steps(config, registry)
    return found + ([steps] if steps else [])
