"""The slices of a study, loaded once per process: per fold its parts, and the extra sets.

:func:`load_study_data` is what every process of a study runs before any job (a torchrun rank
or a ``--shard`` loads the same slices and plans the same replicates); :func:`check_data` is
what ``ada config validate`` runs: the same loading and checks, without keeping anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from ada_core.data import SliceSet, load_slices
from ada_core.engine.jobs import Replicate
from ada_core.engine.plan import RunPlan
from ada_core.errors import DataError
from ada_core.splits import Fold, fold_slices, plan_folds, split_slices

__all__ = ["StudyData", "check_data", "load_study_data"]


@dataclass
class StudyData:
    """The slices of a study on the device: per fold its parts, and the extra sets."""

    parts: dict[str, dict[str, SliceSet]]  # fold -> {"train", "val", "test"}
    extra: dict[str, SliceSet]
    replicates: list[Replicate]
    fingerprint: str


def _extra_sets(plan: RunPlan, save: bool = True) -> dict[str, SliceSet]:
    sets: dict[str, SliceSet] = {}
    for es in plan.eval_sets:
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
    for fold, train, val, test in _fold_parts(plan, slices):
        parts[fold.name] = {"train": train.to(dev), "val": val.to(dev), "test": test.to(dev)}
        for seed in plan.seeds:
            replicates.append(
                Replicate(
                    fold.name, seed, tuple(sorted(fold.train)), tuple(sorted(fold.val)),
                    tuple(sorted(fold.test)),
                )  # fmt: skip
            )
    return StudyData(parts, _extra_sets(plan), replicates, plan.dataset.fingerprint())


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
    for fold, _, _, _ in _fold_parts(plan, slices):
        sizes = f"{len(fold.train)}/{len(fold.val)}/{len(fold.test)}"
        parts.append(f"{fold.name}: {sizes}" if fold.name else sizes)
    _extra_sets(plan, save=False)
    return (f"{len(set(slices.subject))} labelled subjects, {len(slices)} slices; train/val/test "
            f"persons {', '.join(parts)}; {len(plan.seeds)} seed(s), {len(plan.branches)} branches")
