"""The run plan: everything a run needs, built and checked once from the config and registry.

:func:`build_plan` is the only engine code that touches the registry and ``ComponentSpec``. Phases and jobs receive the typed records defined here (:class:`Schedule`,
:class:`Evaluation`, :class:`Branch`, ...), never the whole ``ExperimentConfig``. Every check a
run makes before work starts happens here (``ada config validate`` calls the same function):
component parameters, the device, the model against the image size, each attributor against
the model (e.g. a GradCam layer), the mask builder and the robustness square against the image
size, the checkpoint rule and the convergence epochs against the schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ada_core.augment import AugmentConfig
from ada_core.config import ComponentSpec, ExperimentConfig, to_toml
from ada_core.data import PreprocessConfig
from ada_core.engine.ensemble import check_model
from ada_core.engine.keys import key_settings, without_standardise
from ada_core.engine.loop import Runtime
from ada_core.engine.device import component_cuda_notes, cuda_only_notes, resolve_device
from ada_core.errors import ConfigError, suggest
from ada_core.fieldtags import active_data, tagged_settings
from ada_core.interfaces import Attributor, MaskBuilder, SegDataset, SegModel
from ada_core.quantities import COMPARED_METRICS, METRICS, PAPER_METRICS
from ada_core.registry import Registry
from ada_core.runfolder import AnalysisRecord
from ada_core.splits import SplitConfig

__all__ = [
    "Branch",
    "EvalSet",
    "Evaluation",
    "RunPlan",
    "Schedule",
    "build_plan",
    "resolve_device",
]


@dataclass(frozen=True)
class Schedule:
    """How phases train (the train fields phases need, resolved)."""

    standard_epochs: int
    cycles: int
    ada_epochs: int
    batch_size: int
    lr: float
    loss: str
    checkpoint: Literal["best", "last", "average"]
    average_last: int
    augment: AugmentConfig
    augment_ada_images: bool
    save_ada_images: bool
    convergence_at: tuple[int, ...]
    eval_batch_size: int
    #: ``last.pt`` every this many epochs of a phase, and at its last epoch.
    checkpoint_every: int = 1

    @property
    def branch_epochs(self) -> int:
        return self.cycles * self.ada_epochs


@dataclass(frozen=True)
class Evaluation:
    """How selected checkpoints are scored."""

    robustness: bool
    size: int
    margin_mm: float
    context_margin_mm: float | None
    fill: float
    #: What the robustness sets compute: the paper's table columns, the compared metrics and
    #: the primary metric (what the summary and the report show); the rest stay NaN there.
    metrics: tuple[str, ...] = tuple(METRICS)


@dataclass(frozen=True)
class Branch:
    """One branch of the study: an attributor (ADA) or the keep-training control.

    Attributes:
        label: folder and table name.
        method: the attributor's registry name.
        title: how sentences name it (:meth:`Attributor.describe`).
        control: True for a control (an attributor that declares ``control``).
        planted: True for a planted-effect control (an attributor that knows the answer).
        new_attributor: builds a fresh attributor; None for a branch that does not erase
            (the keep-training control).
        repeat: how often the conventional data is shown per epoch (2: the step-matched control).
        settings: the branch's own settings (its key and the summary).
    """

    label: str
    method: str
    title: str
    control: bool
    new_attributor: Callable[[], Attributor] | None
    repeat: int
    settings: dict[str, Any]
    planted: bool = False

    @property
    def kind(self) -> Literal["ada", "control"]:
        return "control" if self.new_attributor is None else "ada"


@dataclass(frozen=True)
class EvalSet:
    """An extra evaluation set (``[[evaluate]]``)."""

    label: str
    dataset: SegDataset
    preprocess: PreprocessConfig
    part: Literal["all", "val", "train"]
    split: SplitConfig


@dataclass(frozen=True)
class RunPlan:
    """Everything one run needs; see the module docstring."""

    name: str
    run_dir: Path
    cache_dir: Path
    mode: Literal["train", "compare"]
    seeds: tuple[int, ...]
    runtime: Runtime
    schedule: Schedule
    evaluation: Evaluation
    dataset: SegDataset
    preprocess: PreprocessConfig
    split: SplitConfig
    new_model: Callable[[], SegModel]
    new_mask: Callable[[], MaskBuilder]
    branches: tuple[Branch, ...]
    eval_sets: tuple[EvalSet, ...]
    #: Settings tagged "standard", "branch" and "eval" (the key payloads; fieldtags).
    standard_settings: dict[str, Any]
    branch_settings: dict[str, Any]
    eval_settings: dict[str, Any]
    config_toml: str
    config_json: dict[str, Any]
    analysis: AnalysisRecord
    model_spec: dict[str, Any] = field(default_factory=dict)
    #: Warnings for the start of the run: settings that have no effect on this machine only.
    notes: tuple[str, ...] = ()
    #: train.ensemble: the branches of a replicate train as one batched ensemble.
    ensemble: bool = False

    def branch(self, label: str) -> Branch:
        return next(b for b in self.branches if b.label == label)


def _train_mode_notes(config: ExperimentConfig, mode: str) -> tuple[str, ...]:
    """``ada train`` runs the first attributor only: the others are named, not silently left."""
    rest = [a.name for a in config.attributors[1:]]
    if mode != "train" or not rest:
        return ()
    return (f"ada train runs one ADA branch, attributors[0] ({config.attributors[0].name}); the "
            f"other {len(rest)} listed ({', '.join(rest)}) are not run: `ada compare` runs "
            "every attributor",)


def _branch(
    spec: ComponentSpec, i: int, config: ExperimentConfig, registry: Registry, model: SegModel
) -> Branch:
    where = f"attributors[{i}]"
    section = registry.attributors
    cls = section.get(spec.name)
    cfg = cls.resolve_config(section.config(spec.name, spec.params, f"{where}.params"), config.train)
    probe = cls(cfg)
    if cls.erases:
        try:
            probe.check_model(model)
        except ConfigError as e:
            raise ConfigError(f"{where} ({spec.key!r}): {e}") from None
    settings = {"method": spec.name, "params": cfg.model_dump(mode="json")}
    new = (lambda cls=cls, cfg=cfg: cls(cfg)) if cls.erases else None
    return Branch(spec.key, spec.name, probe.describe(), bool(cls.control), new, probe.repeat,
                  settings, bool(cls.planted))


def _check_schedule(config: ExperimentConfig) -> tuple[int, ...]:
    t = config.train
    total = t.cycles * t.ada_epochs
    if t.checkpoint == "average":
        for key, epochs in (("standard_epochs", t.standard_epochs), ("cycles x ada_epochs", total)):
            if 0 < epochs < t.average_last:
                raise ConfigError(
                    f"train.average_last = {t.average_last} is larger than train.{key} = "
                    f"{epochs}: checkpoint = 'average' needs at least k epochs in every phase; "
                    f"lower train.average_last to at most {epochs}"
                )
    if t.convergence_at is None:
        return (min(t.ada_epochs, total),) if total else ()
    late = [e for e in t.convergence_at if e > total]
    if late:
        raise ConfigError(
            f"train.convergence_at = {t.convergence_at}: epochs {late} are past the end of a "
            f"branch ({t.cycles} cycles x {t.ada_epochs} ADA epochs = {total})"
        )
    return tuple(t.convergence_at)


def _analysis(config: ExperimentConfig, branches: tuple[Branch, ...], extra: list[str],
              source: str) -> AnalysisRecord:  # fmt: skip
    """``[study]`` resolved against the plan: the primary set, metric and controls exist."""
    t, p = config.train, config.study.primary
    sets = ["val", *(["test"] if config.data.split.test != "none" else []),
            *(["robustness", "robustness_near"] if t.robustness else []),
            *(["context"] if t.context_margin_mm is not None else []), *extra]  # fmt: skip
    set_ = p.set or ("test" if "test" in sets else "val")
    if set_ not in sets:
        raise ConfigError(f"{source}: study.primary.set = {set_!r} is not scored by this study "
                          f"(its sets: {sets}). {suggest(set_, sets)}")  # fmt: skip
    if p.metric not in METRICS:
        raise ConfigError(f"{source}: study.primary.metric = {p.metric!r} is not a metric of "
                          f"results.csv. {suggest(p.metric, METRICS)}")
    controls = [b for b in branches if b.control]
    labels = [b.label for b in controls]
    if p.control is None:
        chosen = [b.label for b in controls if b.method == "random"] or labels
    else:
        chosen = [p.control] if isinstance(p.control, str) else list(p.control)
        for c in chosen:
            if c not in labels:
                raise ConfigError(f"{source}: study.primary.control = {c!r} is not a control "
                                  f"branch of this study. {suggest(c, labels)}")  # fmt: skip
    return AnalysisRecord(primary_set=set_ if chosen else None, primary_metric=p.metric,
                          primary_controls=chosen, alpha=config.study.alpha,
                          resolve=config.study.resolve,
                          planted=[b.label for b in branches if b.planted])  # fmt: skip


def _eval_sets(config: ExperimentConfig, registry: Registry, size: tuple[int, ...],
               source: str) -> tuple[EvalSet, ...]:  # fmt: skip
    """The extra evaluation sets, built; each must take the models' image size."""
    eval_sets = tuple(
        EvalSet(
            spec.key,
            registry.build("dataset", spec, f"evaluate[{i}].params"),
            spec.preprocess,
            spec.part,
            spec.split,
        )
        for i, spec in enumerate(config.evaluate)
    )
    for es, spec in zip(eval_sets, config.evaluate, strict=True):
        if tuple(spec.preprocess.size) != size:
            raise ConfigError(
                f"{source}: evaluate[{es.label}].preprocess.size = {list(spec.preprocess.size)} "
                f"differs from data.preprocess.size = {list(size)}; the models take one size"
            )
    return eval_sets


def _schedule(config: ExperimentConfig, convergence: Any) -> Schedule:
    t = config.train
    return Schedule(
        standard_epochs=t.standard_epochs,
        cycles=t.cycles,
        ada_epochs=t.ada_epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        loss=t.loss,
        checkpoint=t.checkpoint,
        average_last=t.average_last,
        augment=config.augment,
        augment_ada_images=t.augment_ada_images,
        save_ada_images=t.save_ada_images,
        convergence_at=convergence,
        eval_batch_size=t.eval_batch_size,
        checkpoint_every=t.checkpoint_every,
    )


def _robustness_size(size_set: int | None, mask: MaskBuilder, size: tuple[int, ...],
                     source: str) -> int:  # fmt: skip
    """The robustness square's side (``train.robustness_size``, else the mask's erase size,
    else the paper's 20); it must fit the images."""
    z = size_set or mask.erase_size or 20
    if z > min(size):
        key = "train.robustness_size" if size_set else "mask.params (its erase size)"
        raise ConfigError(
            f"{source}: {key} = {z} is larger than the {size[0]}x{size[1]} images "
            f"(data.preprocess.size); the robustness square must fit: use at most {min(size)}"
        )
    return z


def _model_factory(config: ExperimentConfig, registry: Registry, size: tuple[int, ...],
                   ensemble: bool, source: str) -> tuple[Callable[[], SegModel], SegModel]:  # fmt: skip
    """The model factory and one model built by it, checked against the image size (and, for
    ``train.ensemble``, against what vmap can batch)."""

    def new_model() -> SegModel:
        return registry.build("model", config.model, "model.params")

    model = new_model()
    try:
        model.check_input_size(*size)
    except Exception as e:
        raise ConfigError(f"{source}: model {config.model.name!r}: {e}") from None
    if ensemble:
        try:
            check_model(model, size, config.model.name)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return new_model, model


def build_plan(
    config: ExperimentConfig,
    registry: Registry,
    *,
    mode: Literal["train", "compare"] = "compare",
    source: str = "<config>",
) -> RunPlan:
    """Check ``config`` against the registry and build the :class:`RunPlan`.

    Raises:
        ConfigError: naming ``source`` and the dotted key, for every check in the module
            docstring, before any data is loaded or anything is trained.
    """
    if mode not in ("train", "compare"):
        raise ConfigError(f"mode must be 'train' or 'compare', got {mode!r}")
    registry.validate_experiment(config, source)
    if not config.attributors:
        raise ConfigError(f"{source}: attributors is empty: list at least one (or 'none')")
    t = config.train
    device = resolve_device(t.device)
    runtime = Runtime.from_config(t, device)
    size = tuple(config.data.preprocess.size)

    ensemble = t.ensemble and t.cycles > 0
    new_model, model = _model_factory(config, registry, size, ensemble, source)
    specs = list(config.attributors) if mode == "compare" else list(config.attributors[:1])
    branches = tuple(_branch(sp, i, config, registry, model) for i, sp in enumerate(specs))

    def new_mask() -> MaskBuilder:
        return registry.build("mask", config.mask, "mask.params")

    mask = new_mask()
    try:
        mask.check_image_size(*size)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    z = _robustness_size(t.robustness_size, mask, size, source)
    convergence = _check_schedule(config)
    eval_sets = _eval_sets(config, registry, size, source)
    schedule = _schedule(config, convergence)
    analysis = _analysis(config, branches, [e.label for e in eval_sets], source)
    reported = tuple(dict.fromkeys([*PAPER_METRICS, *COMPARED_METRICS, analysis.primary_metric]))
    evaluation = Evaluation(t.robustness, z, t.robustness_margin_mm, t.context_margin_mm, mask.fill,
                            reported)  # fmt: skip
    standard, branch = key_settings(config)
    head = f"resolved configuration of run {config.name!r}" + (f" (from {source})" if source else "")
    return RunPlan(
        name=config.name,
        run_dir=Path(config.output) / config.name,
        cache_dir=Path(config.output) / ".cache",
        mode=mode,
        seeds=tuple(t.study_seeds),
        runtime=runtime,
        schedule=schedule,
        evaluation=evaluation,
        dataset=registry.build("dataset", config.data, "data.params"),
        preprocess=config.data.preprocess,
        split=config.data.split,
        new_model=new_model,
        new_mask=new_mask,
        branches=branches,
        eval_sets=eval_sets,
        standard_settings={**standard, "device_type": device.type},
        branch_settings=branch,
        eval_settings={
            **without_standardise(tagged_settings(config, "eval")),
            "robustness_size": z,
            "fill": mask.fill,
            "robustness_metrics": list(reported),
        },
        config_toml=to_toml(config, head),
        config_json=active_data(config),  # without the fields that have no effect: reads back
        analysis=analysis,
        model_spec=config.model.model_dump(mode="json"),
        notes=(cuda_only_notes(t, device) + component_cuda_notes(config, registry, device)
               + _train_mode_notes(config, mode)),
        ensemble=ensemble,
    )
