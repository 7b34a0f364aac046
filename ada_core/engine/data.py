"""The slices of a study, loaded once per process: per fold its parts, and the extra sets.

:func:`load_study_data` is what every process of a study runs before any job (a torchrun rank
or a ``--shard`` loads the same slices and plans the same replicates); :func:`check_data` is
what ``ada config validate`` can check without loading volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ada_core.data import SliceSet, load_slices
from ada_core.engine.jobs import Replicate
from ada_core.engine.plan import RunPlan
from ada_core.errors import DataError
from ada_core.splits import fold_slices, plan_folds, split_slices

__all__ = ["StudyData", "check_data", "load_study_data"]


@dataclass
class StudyData:
    """The slices of a study on the device: per fold its parts, and the extra sets."""

    parts: dict[str, dict[str, SliceSet]]  # fold -> {"train", "val", "test"}
    extra: dict[str, SliceSet]
    replicates: list[Replicate]
    fingerprint: str


def _extra_sets(plan: RunPlan) -> dict[str, SliceSet]:
    sets: dict[str, SliceSet] = {}
    for es in plan.eval_sets:
        slices = load_slices(es.dataset, es.preprocess, cache_dir=plan.cache_dir)
        if es.part != "all":
            train, val = split_slices(slices, es.split, key=f"evaluate[{es.label}].split")
            slices = val if es.part == "val" else train
        if len(slices) == 0:
            raise DataError(
                f"evaluate[{es.label!r}] (dataset {es.dataset.name!r}, part {es.part!r}) has no "
                "slices; check its params, preprocess and split"
            )
        sets[es.label] = slices.to(plan.runtime.device)
    return sets


def load_study_data(plan: RunPlan) -> StudyData:
    """Load and split the data once; every part of every fold must be non-empty.

    Raises:
        DataError: a part of a fold (train, validation or a requested test part) has no slice.
    """
    slices = load_slices(plan.dataset, plan.preprocess, cache_dir=plan.cache_dir)
    folds = plan_folds(slices.group, slices.site, plan.split, subjects=slices.subject)
    parts: dict[str, dict[str, SliceSet]] = {}
    replicates = []
    for fold in folds:
        train, val, test = fold_slices(slices, fold)
        for name, part in (("training", train), ("validation", val)):
            if len(part) == 0:
                raise DataError(
                    f"dataset {plan.dataset.name!r}"
                    + (f", fold {fold.name!r}" if fold.name else "")
                    + f": the split left {len(train)} training and {len(val)} validation slices; "
                    f"the engine needs {name} slices (check data.split and the data set size)"
                )
        dev = plan.runtime.device
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
    """The data checks ``ada config validate`` can make without loading volumes: the data set
    lists labelled subjects and the split gives every fold non-empty parts (in persons).

    Returns:
        A one-line description of the split (persons per part and fold).

    Raises:
        DataError, ConfigError: naming the data set and the split key.
    """
    subjects = [s for s in plan.dataset.subjects() if s.labelled]
    if not subjects:
        raise DataError(f"dataset {plan.dataset.name!r} lists no labelled subject; check its params")
    folds = plan_folds([s.group for s in subjects], [s.site for s in subjects], plan.split,
                       subjects=[s.id for s in subjects])
    parts = []
    for fold in folds:
        if not fold.train or not fold.val:
            raise DataError(
                f"dataset {plan.dataset.name!r}: the split leaves {len(fold.train)} training and "
                f"{len(fold.val)} validation persons" + (f" in fold {fold.name!r}" if fold.name else "")
                + "; the engine needs both (check data.split)"
            )
        sizes = f"{len(fold.train)}/{len(fold.val)}/{len(fold.test)}"
        parts.append(f"{fold.name}: {sizes}" if fold.name else sizes)
    for es in plan.eval_sets:
        if not any(s.labelled for s in es.dataset.subjects()):
            raise DataError(f"evaluate[{es.label!r}]: dataset {es.dataset.name!r} lists no labelled subject")
    return (f"{len(subjects)} labelled subjects; train/val/test persons {', '.join(parts)}; "
            f"{len(plan.seeds)} seed(s), {len(plan.branches)} branches")
