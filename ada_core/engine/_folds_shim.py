"""TEMPORARY: train/val folds until ada_core.splits gains plan_folds (test part)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ada_core.data import SliceSet
from ada_core.splits import SplitConfig, split_groups


@dataclass(frozen=True)
class Fold:
    name: str
    train: frozenset[str]
    val: frozenset[str]
    test: frozenset[str]


def plan_folds(groups: Sequence[str], sites: Sequence[str], config: SplitConfig) -> list[Fold]:
    val = split_groups(groups, sites, config)
    everyone = frozenset(groups)
    return [Fold("", everyone - val, frozenset(val), frozenset())]


def fold_slices(slices: SliceSet, fold: Fold) -> tuple[SliceSet, SliceSet, SliceSet]:
    parts = []
    for part in (fold.train, fold.val, fold.test):
        parts.append(slices.subset([i for i, g in enumerate(slices.group) if g in part]))
    return tuple(parts)  # type: ignore[return-value]
