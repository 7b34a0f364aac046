"""Subject-level splits: persons into train, validation and a held-out test part, never slices.

Every part is a set of persons (``Subject.group``), so the sessions and raters of one person
never straddle parts. :func:`plan_folds` decides, per fold:

1. the test part (``test``): none; a seeded fraction of the persons; the persons of listed
   subjects; the persons of listed sites; or, for ``loso``, each site in turn (one fold per
   site);
2. the validation part from the persons left (``method``): a seeded fraction, or one site;
3. the training part: every person left.

Training trains on ``train``, selects checkpoints on ``val`` and only reports on ``test``.
:func:`fold_slices` cuts a :class:`~ada_core.data.SliceSet` into the three parts. The two-part
functions :func:`split_groups`, :func:`split_subjects` and :func:`split_slices` give the same
train/validation persons for a single split (they refuse ``loso``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ada_core.errors import ConfigError, DataError, closest
from ada_core.fieldtags import Settings, used_when

if TYPE_CHECKING:
    from ada_core.data import SliceSet
    from ada_core.interfaces import Subject

__all__ = [
    "Fold",
    "SplitConfig",
    "fold_slices",
    "plan_folds",
    "split_groups",
    "split_slices",
    "split_subjects",
]

TestPolicy = Literal["none", "fraction", "subjects", "sites", "loso"]


class SplitConfig(Settings):
    """How persons are split into training, validation and an optional held-out test part."""

    method: Literal["fraction", "site"] = Field(
        "fraction",
        description="Validation part, drawn from the persons outside the test part: "
        "'fraction': seeded random persons; 'site': every person of val_site.",
    )
    val_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Fraction of the non-test persons held out for validation (at least one, "
        "always leaving one to train on). Training selects checkpoints on validation, so it "
        "needs > 0.",
        json_schema_extra=used_when("method", "fraction"),
    )
    val_site: str | None = Field(
        None, description="Site held out for validation when method = 'site'.",
        json_schema_extra=used_when("method", "site"),
    )
    seed: int = Field(
        0, ge=0, description="Seed of the random validation draw.",
        json_schema_extra=used_when("method", "fraction"),
    )
    test: TestPolicy = Field(
        "none",
        description="Held-out test part, never used to select a checkpoint: 'none'; "
        "'fraction': test_fraction of the persons, drawn with test_seed; 'subjects': the "
        "persons of test_subjects; 'sites': every person of test_sites; 'loso': one fold per "
        "site, each testing on that site (validation then needs method = 'fraction').",
    )
    test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Fraction of the persons held out for test when test = 'fraction' (at "
        "least one, always leaving two for validation and training).",
        json_schema_extra=used_when("test", "fraction"),
    )
    test_subjects: tuple[str, ...] = Field(
        (),
        description="Subject or person ids held out for test when test = 'subjects'; a listed "
        "session or rater takes its whole person.",
        json_schema_extra=used_when("test", "subjects"),
    )
    test_sites: tuple[str, ...] = Field(
        (), description="Sites held out for test when test = 'sites'.",
        json_schema_extra=used_when("test", "sites"),
    )
    test_seed: int = Field(
        0,
        ge=0,
        description="Seed of the random test draw (test = 'fraction'); separate from seed, so a "
        "new validation draw keeps the same test persons.",
        json_schema_extra=used_when("test", "fraction"),
    )

    @field_validator("test_subjects", "test_sites", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value  # --set data.split.test_sites=Milan

    @model_validator(mode="after")
    def _consistent(self) -> SplitConfig:
        # A list set under another policy is refused by its field tag (Settings).
        listed = {"subjects": self.test_subjects, "sites": self.test_sites}
        examples = {"subjects": '["sub-01"]', "sites": '["site1"]'}
        for policy, names in listed.items():
            if self.test == policy and not names:
                raise ValueError(f"test = {policy!r} needs test_{policy}, e.g. "
                                 f"test_{policy} = {examples[policy]}")  # fmt: skip
        if self.test == "loso" and self.method == "site":
            raise ValueError(
                "test = 'loso' tests on every site in turn, val_site included; set "
                "method = 'fraction' to validate on persons of the other sites"
            )
        if self.test == "sites" and self.method == "site" and self.val_site in self.test_sites:
            raise ValueError(f"val_site {self.val_site!r} is also in test_sites; validate on "
                             "another site or remove it from test_sites")  # fmt: skip
        return self


@dataclass(frozen=True)
class Fold:
    """One train/validation/test split, as sets of persons (``Subject.group``).

    Attributes:
        name: ``""`` for a single split; ``"site-<slug>"`` per left-out site for ``loso``
            (lower case, ``[a-z0-9_-]``, a short hash added where two sites would share a
            slug: safe as a folder name on any file system).
        train: persons trained on.
        val: persons checkpoints are selected on.
        test: persons only reported on (empty when ``test = "none"``).
    """

    name: str
    train: frozenset[str]
    val: frozenset[str]
    test: frozenset[str]

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            object.__setattr__(self, part, frozenset(getattr(self, part)))
        both = (self.train & self.val) | (self.train & self.test) | (self.val & self.test)
        if both:
            raise DataError(
                f"fold {self.name!r}: persons {sorted(both)} are in two parts; each person "
                "must be in exactly one of train, val and test"
            )


def _unknown(name: str, choices: Sequence[str], limit: int = 20) -> str:
    """The valid choices (the first ``limit``) and the closest one, a case-only difference
    first (``closest`` is case-sensitive)."""
    choices = sorted(set(choices))
    near = next((c for c in choices if c.casefold() == name.casefold()), None)
    near = near or closest(name, choices)
    shown = ", ".join(map(repr, choices[:limit])) + (", ..." if len(choices) > limit else "")
    return f"Valid choices: {shown}." + (f" Did you mean {near!r}?" if near else "")


def _person_sites(groups: Sequence[str], sites: Sequence[str]) -> dict[str, str]:
    site_of: dict[str, str] = {}
    for g, s in zip(groups, sites, strict=True):
        if site_of.setdefault(g, s) != s:
            raise DataError(
                f"person {g!r} appears at two sites ({site_of[g]!r}, {s!r}); a split keeps a "
                "person in one part and a site split needs one site per person: check the data "
                "set's site column and how it groups sessions into persons"
            )
    return site_of


def _site_slugs(sites: Sequence[str]) -> dict[str, str]:
    """Path-safe, distinct slugs (``site-<slug>``) for the sorted distinct ``sites``."""
    base = {s: re.sub(r"[^a-z0-9_]+", "-", s.lower()).strip("-_") or "site" for s in sites}
    counts = {b: list(base.values()).count(b) for b in base.values()}
    return {
        s: "site-" + (b if counts[b] == 1 else f"{b}-{hashlib.sha1(s.encode()).hexdigest()[:6]}")
        for s, b in base.items()
    }


def _draw(persons: list[str], fraction: float, seed: int, leave: int) -> set[str]:
    """``round(fraction * n)`` persons (at least one, leaving ``leave``) by a seeded permutation."""
    n = min(max(1, round(fraction * len(persons))), len(persons) - leave)
    order = np.random.default_rng(seed).permutation(len(persons))
    return {persons[i] for i in order[:n]}


def _test_parts(site_of: dict[str, str], config: SplitConfig, subjects: Sequence[str] | None,
                groups: Sequence[str], key: str) -> list[tuple[str, set[str]]]:  # fmt: skip
    """``(fold name, test persons)`` for each fold of ``config.test``."""
    persons = sorted(site_of)
    all_sites = sorted(set(site_of.values()))
    if config.test == "none":
        return [("", set())]
    if config.test == "fraction":
        # With a validation site, test persons come from the other sites and one must be left
        # to train on; otherwise two (validation and training).
        pool = [p for p in persons if config.method != "site" or site_of[p] != config.val_site]
        leave = 1 if config.method == "site" else 2
        if len(pool) < leave + 1:
            where = f" outside val_site {config.val_site!r}" if config.method == "site" else ""
            raise DataError(
                f"{key}.test = 'fraction' needs at least {leave + 1} persons{where} (test, "
                f"{'training' if leave == 1 else 'validation, training'}), the data has "
                f"{len(pool)}; add persons"
            )
        return [("", _draw(pool, config.test_fraction, config.test_seed, leave=leave))]
    if config.test == "subjects":
        person_of = dict(zip(subjects, groups, strict=True)) if subjects is not None else {}
        person_of.update({p: p for p in persons})
        test = set()
        for name in config.test_subjects:
            if name not in person_of:
                raise ConfigError(
                    f"{key}.test_subjects: {name!r} is neither a subject nor a person of the "
                    "data. " + _unknown(name, list(person_of))
                )
            test.add(person_of[name])
        return [("", test)]
    if config.test == "sites":
        for site in config.test_sites:
            if site not in all_sites:
                raise ConfigError(f"{key}.test_sites: {site!r} is not a site of the data. "
                                  + _unknown(site, all_sites))  # fmt: skip
        return [("", {p for p in persons if site_of[p] in config.test_sites})]
    if len(all_sites) < 2:
        raise ConfigError(f"{key}.test = 'loso' needs at least 2 sites, the data has "
                          f"{all_sites}; use test = 'fraction' or 'subjects'")  # fmt: skip
    slugs = _site_slugs(all_sites)
    return [(slugs[s], {p for p in persons if site_of[p] == s}) for s in all_sites]


def _plan(groups: Sequence[str], sites: Sequence[str], config: SplitConfig,
          subjects: Sequence[str] | None, key: str, require_val: bool) -> list[Fold]:  # fmt: skip
    site_of = _person_sites(groups, sites)
    all_sites = sorted(set(site_of.values()))
    if config.method == "site":
        if config.val_site is None:
            raise ConfigError(f"{key}.val_site must be set when {key}.method = 'site'; sites: "
                              f"{all_sites}")  # fmt: skip
        if config.val_site not in all_sites:
            raise ConfigError(f"{key}.val_site = {config.val_site!r} is not a site of the data. "
                              + _unknown(config.val_site, all_sites))  # fmt: skip
        if len(all_sites) < 2:
            raise ConfigError(f"{key}.method = 'site' (leave one site out) needs two sites, the "
                              f"data has {all_sites}; use method = 'fraction'")  # fmt: skip
    elif require_val and config.val_fraction == 0:
        raise ConfigError(f"{key}.val_fraction = 0 leaves no validation part, but training "
                          f"selects its checkpoints on validation; set {key}.val_fraction > 0 "
                          f"(e.g. 0.2) or {key}.method = 'site'")  # fmt: skip
    folds = []
    for name, test in _test_parts(site_of, config, subjects, groups, key):
        where = f"{key} (fold {name!r})" if name else key
        rest = sorted(p for p in site_of if p not in test)
        if config.method == "site":
            val = {p for p in rest if site_of[p] == config.val_site}
            if not val:
                raise ConfigError(f"{where}: every person of val_site {config.val_site!r} is in "
                                  f"the test part {sorted(test)}; validate on another site or "
                                  "hold out other persons for test")  # fmt: skip
        elif config.val_fraction == 0:
            val = set()
        else:
            if len(rest) < 2:
                held = f" after the {len(test)} test person(s)" if test else ""
                fix = "hold out fewer persons for test or add persons" if test else "add persons"
                raise DataError(f"{where}: cannot hold out validation persons: only "
                                f"{len(rest)} person(s) left{held}; validation needs at least 2 "
                                f"(one to train on, one to validate on); {fix}")  # fmt: skip
            val = _draw(rest, config.val_fraction, config.seed, leave=1)
        train = set(rest) - val
        if not train:
            raise ConfigError(
                f"{where}: no person left to train on (validation {sorted(val)}, test "
                f"{sorted(test)}); hold out fewer persons"
            )
        folds.append(Fold(name, frozenset(train), frozenset(val), frozenset(test)))
    return folds


def plan_folds(
    groups: Sequence[str],
    sites: Sequence[str],
    config: SplitConfig,
    *,
    subjects: Sequence[str] | None = None,
    key: str = "data.split",
) -> list[Fold]:
    """The folds of ``config`` over persons ``groups`` at ``sites`` (one entry per subject or
    slice; repeats are fine).

    Args:
        groups: the person of each entry (``Subject.group`` / ``SliceSet.group``).
        sites: the site of each entry.
        config: the split settings.
        subjects: the subject id of each entry, so that ``test_subjects`` can name sessions or
            raters (``SliceSet.subject``); without it ``test_subjects`` must name persons.
        key: where ``config`` sits in the experiment, for messages (``evaluate[0].split``).

    Returns:
        One fold (named ``""``) or, for ``test = "loso"``, one per site in site order. In every
        fold train, val and test partition the persons; train and val are never empty, and
        test is empty only for ``test = "none"``.

    Raises:
        ConfigError: the settings do not fit the data (unknown subject or site, too few sites,
            validation part empty, ``val_fraction = 0``), naming the key.
        DataError: a person at two sites, or too few persons for the parts.
    """
    return _plan(groups, sites, config, subjects, key, require_val=True)


def fold_slices(slices: SliceSet, fold: Fold) -> tuple[SliceSet, SliceSet, SliceSet]:
    """The (train, val, test) slices of ``fold`` by ``slices.group``; order is kept.

    Raises:
        DataError: some slices belong to persons in no part of the fold (it was planned on
            other data).
    """
    part_of = {g: k for k, part in enumerate((fold.train, fold.val, fold.test)) for g in part}
    stray = sorted({g for g in slices.group if g not in part_of})
    if stray:
        raise DataError(f"fold {fold.name!r}: persons {stray[:5]} of these slices are in no part; "
                        "plan the folds on the same slices (plan_folds(slices.group, slices.site, "
                        "config, subjects=slices.subject))")  # fmt: skip
    idx: list[list[int]] = [[], [], []]
    for i, g in enumerate(slices.group):
        idx[part_of[g]].append(i)
    train, val, test = (slices.subset(ix) for ix in idx)
    return train, val, test


def _single(groups: Sequence[str], sites: Sequence[str], config: SplitConfig,
            subjects: Sequence[str] | None, key: str) -> Fold:  # fmt: skip
    if config.test == "loso":
        raise ConfigError(f"{key}.test = 'loso' gives one split per site; use plan_folds and "
                          "fold_slices, or test = 'sites' for one left-out site")  # fmt: skip
    return _plan(groups, sites, config, subjects, key, require_val=False)[0]


def split_groups(
    groups: Sequence[str],
    sites: Sequence[str],
    config: SplitConfig,
    *,
    subjects: Sequence[str] | None = None,
    key: str = "data.split",
) -> set[str]:
    """The validation persons for ``groups`` with their ``sites`` (one per entry).

    ``fraction``: ``round(val_fraction * persons)`` of the non-test persons (at least one when
    the fraction is positive, always leaving one for training), drawn by a permutation seeded
    with ``seed`` of the sorted persons; ``val_fraction = 0`` gives none. ``site``: every
    non-test person of ``val_site``. Refuses ``test = "loso"`` (use :func:`plan_folds`).
    """
    return set(_single(groups, sites, config, subjects, key).val)


def split_subjects(subjects: Sequence[Subject], config: SplitConfig, *,
                   key: str = "data.split") -> tuple[list[Subject], list[Subject]]:  # fmt: skip
    """Split subjects into (train, val) by person before loading; order is kept. Subjects of
    the test part (if any) are in neither."""
    fold = _single([s.group for s in subjects], [s.site for s in subjects], config,
                   [s.id for s in subjects], key)  # fmt: skip
    train = [s for s in subjects if s.group in fold.train]
    return train, [s for s in subjects if s.group in fold.val]


def split_slices(slices: SliceSet, config: SplitConfig, *,
                 key: str = "data.split") -> tuple[SliceSet, SliceSet]:  # fmt: skip
    """Split slices into (train, val) by ``slices.group``; the same persons as
    :func:`split_subjects` on the same subjects. Slices of the test part are in neither."""
    fold = _single(slices.group, slices.site, config, slices.subject, key)
    train, val, _ = fold_slices(slices, fold)
    return train, val
