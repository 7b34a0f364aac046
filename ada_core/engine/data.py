"""The slices of a study, loaded once per process: per fold its parts, and the extra sets.

:func:`load_study_data` is what every process of a study runs before any job (a torchrun rank
or a ``--shard`` loads the same slices and plans the same replicates); :func:`check_data` is
what ``ada config validate`` runs: the same loading and checks, without keeping anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ada_core._standardise import apply_scale, learn_scale
from ada_core.data import SliceSet, load_slices
from ada_core.engine.jobs import Replicate
from ada_core.engine.plan import RunPlan
from ada_core.errors import ConfigError, DataError
from ada_core.splits import Fold, fold_slices, plan_folds, split_slices

__all__ = ["StudyData", "check_data", "load_study_data", "standardise_fold"]


@dataclass
class StudyData:
    """The slices of a study on the device: per fold its parts, and the extra sets.

    ``scales`` holds each fold's histogram standard scale (``standardise = "histogram"``;
    empty otherwise): learned on the fold's training persons, applied to its parts here and to
    the extra sets by :meth:`extra_for`, stored in the fold's checkpoints.
    """

    parts: dict[str, dict[str, SliceSet]]  # fold -> {"train", "val", "test"}
    extra: dict[str, SliceSet]
    replicates: list[Replicate]
    fingerprint: str
    scales: dict[str, list[float]] = field(default_factory=dict)

    def extra_for(self, fold: str) -> dict[str, SliceSet]:
        """The extra sets as the models of ``fold`` see them (its standard scale applied to
        a set preprocessed with histogram standardisation)."""
        scale = self.scales.get(fold)
        if scale is None:
            return self.extra
        return {k: _mapped(v, torch.tensor(scale, dtype=torch.float64))
                for k, v in self.extra.items()}  # fmt: skip


def _mapped(slices: SliceSet, scale: torch.Tensor) -> SliceSet:
    if slices.landmarks is None:
        return slices
    images = apply_scale(slices.images, slices.landmarks.to(slices.images.device), scale)
    return replace(slices, images=images)


def standardise_fold(train: SliceSet, val: SliceSet, test: SliceSet
                     ) -> tuple[list[float] | None, tuple[SliceSet, SliceSet, SliceSet]]:  # fmt: skip
    """The fold's histogram standard scale, learned on its training persons only (one
    landmark row per training volume), and the three parts mapped onto it; parts without
    landmarks (another ``standardise``) come back unchanged with scale None."""
    if train.landmarks is None:
        return None, (train, val, test)
    first = {}
    for i, s in enumerate(train.subject):
        first.setdefault(s, i)  # a volume's slices share its landmarks
    scale = learn_scale(train.landmarks[list(first.values())].cpu())
    return scale.tolist(), tuple(_mapped(p, scale) for p in (train, val, test))  # type: ignore[return-value]


def _extra_sets(plan: RunPlan, save: bool = True) -> dict[str, SliceSet]:
    sets: dict[str, SliceSet] = {}
    for es in plan.eval_sets:
        if es.preprocess.standardise == "histogram" != plan.preprocess.standardise:
            raise ConfigError(
                f"evaluate[{es.label}].preprocess.standardise = 'histogram' needs the standard "
                "scale learned by the run's training persons, but data.preprocess.standardise = "
                f"{plan.preprocess.standardise!r}; standardise both the same way"
            )
        slices = load_slices(es.dataset, es.preprocess, cache_dir=plan.cache_dir, save=save)
        if es.part != "all":
            train, val = split_slices(slices, es.split, key=f"evaluate[{es.label}].split")
            slices = val if es.part == "val" else train
        if len(slices) == 0:
            raise DataError(
                f"evaluate[{es.label!r}] (dataset {es.dataset.name!r}, part {es.part!r}) has no "
                "slices; check its params, preprocess and split"
            )
        sets[es.label] = slices.to(plan.runtime.device) if save else slices
    return sets


def _fold_parts(plan: RunPlan, slices: SliceSet) -> list[tuple[Fold, SliceSet, SliceSet, SliceSet]]:
    """Each fold with its (train, val, test) slices; training and validation must be non-empty.

    Raises:
        DataError: a fold's training or validation part has no slice.
    """
    out = []
    for fold in plan_folds(slices.group, slices.site, plan.split, subjects=slices.subject):
        train, val, test = fold_slices(slices, fold)
        for name, part in (("training", train), ("validation", val)):
            if len(part) == 0:
                raise DataError(
                    f"dataset {plan.dataset.name!r}"
                    + (f", fold {fold.name!r}" if fold.name else "")
                    + f": the split left {len(train)} training and {len(val)} validation slices; "
                    f"the engine needs {name} slices (check data.split and the data set size)"
                )
        out.append((fold, train, val, test))
    return out


def load_study_data(plan: RunPlan) -> StudyData:
    """Load and split the data once; every part of every fold must be non-empty.

    Raises:
        DataError: a part of a fold (train, validation or a requested test part) has no slice.
    """
    slices = load_slices(plan.dataset, plan.preprocess, cache_dir=plan.cache_dir)
    parts: dict[str, dict[str, SliceSet]] = {}
    replicates = []
    dev = plan.runtime.device
    scales: dict[str, list[float]] = {}
    for fold, train, val, test in _fold_parts(plan, slices):
        scale, (train, val, test) = standardise_fold(train, val, test)
        if scale is not None:
            scales[fold.name] = scale
        parts[fold.name] = {"train": train.to(dev), "val": val.to(dev), "test": test.to(dev)}
        for seed in plan.seeds:
            replicates.append(
                Replicate(
                    fold.name, seed, tuple(sorted(fold.train)), tuple(sorted(fold.val)),
                    tuple(sorted(fold.test)),
                )  # fmt: skip
            )
    return StudyData(parts, _extra_sets(plan), replicates, plan.dataset.fingerprint(), scales)


def check_data(plan: RunPlan) -> str:
    """What ``ada config validate`` checks: the data loads exactly as ``ada compare`` loads it
    (every labelled volume opened, read and preprocessed: a file that is not NIfTI, truncated,
    2-D or 5-D, with NaN voxels, a label on another grid, a label without grey matter all fail
    here as they would there), and the split gives every fold non-empty parts. Nothing is
    written: a slice cache of an earlier run is used when there is one, none is made.

    Returns:
        A one-line description of the data and split (subjects, slices, persons per part).

    Raises:
        DataError, ConfigError: naming the file, the data set or the split key.
    """
    slices = load_slices(plan.dataset, plan.preprocess, cache_dir=plan.cache_dir, save=False)
    parts = []
    for fold, train, val, test in _fold_parts(plan, slices):
        standardise_fold(train, val, test)  # the scale can be learned from the training part
        sizes = f"{len(fold.train)}/{len(fold.val)}/{len(fold.test)}"
        parts.append(f"{fold.name}: {sizes}" if fold.name else sizes)
    _extra_sets(plan, save=False)
    return (f"{len(set(slices.subject))} labelled subjects, {len(slices)} slices; train/val/test "
            f"persons {', '.join(parts)}; {len(plan.seeds)} seed(s), {len(plan.branches)} branches")
