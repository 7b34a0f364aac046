"""Subject-level train/validation splits: by person, never by slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ada_core.errors import ConfigError, DataError, suggest

if TYPE_CHECKING:
    from ada_core.data import SliceSet
    from ada_core.interfaces import Subject

__all__ = ["SplitConfig", "split_groups", "split_slices", "split_subjects"]


class SplitConfig(BaseModel):
    """How subjects are split into training and validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["fraction", "site"] = Field(
        "fraction", description="'fraction': seeded random subjects; 'site': leave one site out."
    )
    val_fraction: float = Field(
        0.2, ge=0, lt=1, description="Fraction of subjects (persons) held out for validation."
    )
    val_site: str | None = Field(None, description="Site held out when method = 'site'.")
    seed: int = Field(0, description="Seed of the random subject split.")


def split_groups(groups: Sequence[str], sites: Sequence[str], config: SplitConfig) -> set[str]:
    """The validation groups (persons) for ``groups`` with their ``sites`` (one per entry).

    ``fraction``: ``round(val_fraction * persons)`` persons (at least one when the fraction is
    positive, always leaving one for training), drawn by a seeded permutation of the sorted
    persons. ``site``: every person of ``val_site``.
    """
    site_of: dict[str, str] = {}
    for g, s in zip(groups, sites, strict=True):
        if site_of.setdefault(g, s) != s:
            raise DataError(f"person {g!r} appears at two sites ({site_of[g]!r}, {s!r})")
    persons = sorted(site_of)
    if config.method == "site":
        all_sites = sorted(set(site_of.values()))
        if config.val_site is None:
            raise ConfigError(
                f"split.val_site must be set when split.method = 'site'; sites: {all_sites}"
            )
        if config.val_site not in all_sites:
            raise ConfigError(
                f"split.val_site = {config.val_site!r} is not a site of the data. "
                + suggest(config.val_site, all_sites)
            )
        if len(all_sites) < 2:
            raise ConfigError(f"leave-one-site-out needs two sites, the data has {all_sites}")
        return {g for g in persons if site_of[g] == config.val_site}
    if config.val_fraction == 0:
        return set()
    if len(persons) < 2:
        raise DataError(
            f"cannot hold out {config.val_fraction:.0%} for validation: only {len(persons)} "
            "person(s); add subjects or set split.val_fraction = 0"
        )
    n_val = min(max(1, round(config.val_fraction * len(persons))), len(persons) - 1)
    order = np.random.default_rng(config.seed).permutation(len(persons))
    return {persons[i] for i in order[:n_val]}


def split_subjects(
    subjects: Sequence[Subject], config: SplitConfig
) -> tuple[list[Subject], list[Subject]]:
    """Split subjects into (train, val) by person before loading; order is kept."""
    val = split_groups([s.group for s in subjects], [s.site for s in subjects], config)
    return [s for s in subjects if s.group not in val], [s for s in subjects if s.group in val]


def split_slices(slices: SliceSet, config: SplitConfig) -> tuple[SliceSet, SliceSet]:
    """Split slices into (train, val) by ``slices.group``; gives the same persons as
    :func:`split_subjects` on the same subjects."""
    val = split_groups(slices.group, slices.site, config)
    is_val = [g in val for g in slices.group]
    train_idx = [i for i, v in enumerate(is_val) if not v]
    val_idx = [i for i, v in enumerate(is_val) if v]
    return slices.subset(train_idx), slices.subset(val_idx)
