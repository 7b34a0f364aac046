"""ada_core.splits: person-level train/validation/test folds against brute-force references."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ada_core.config import apply_overrides, parse_config
from ada_core.data import SliceSet
from ada_core.errors import ConfigError, DataError
from ada_core.interfaces import Subject
from ada_core.splits import (
    Fold,
    SplitConfig,
    fold_slices,
    plan_folds,
    split_groups,
    split_slices,
    split_subjects,
)


def _subjects() -> list[Subject]:
    out = []
    for p in range(10):
        for ses in range(1 + (p % 3 == 0)):  # persons 0, 3, 6, 9 have two sessions
            out.append(Subject(f"sub-{p}ses{ses}", f"site{p % 3}", f"sub-{p}", str(ses)))
    return out


def fake_slices(groups: list[str], sites: list[str], subjects: list[str]) -> SliceSet:
    """A SliceSet whose image i is filled with i, so a subset's rows can be traced back."""
    n = len(groups)
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return SliceSet(images, torch.zeros(n, 1, 2, 2), torch.ones(n, 2),
                    torch.arange(n), list(subjects), list(sites), list(groups))  # fmt: skip


# --------------------------------------------------------------------------- train/validation


def old_split_groups(groups, sites, config) -> set[str]:
    """The validation draw before test parts existed (reference: runs keep their persons)."""
    persons = sorted(set(groups))
    if config.method == "site":
        return {g for g, s in zip(groups, sites) if s == config.val_site}
    if config.val_fraction == 0:
        return set()
    n_val = min(max(1, round(config.val_fraction * len(persons))), len(persons) - 1)
    order = np.random.default_rng(config.seed).permutation(len(persons))
    return {persons[i] for i in order[:n_val]}


def test_fraction_split_keeps_persons_together_and_is_seeded():
    subjects = _subjects()
    train, val = split_subjects(subjects, SplitConfig(val_fraction=0.2, seed=3))
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
    assert len({s.group for s in val}) == 2  # 20 % of 10 persons
    assert sorted(s.id for s in train + val) == sorted(s.id for s in subjects)
    again = split_subjects(subjects, SplitConfig(val_fraction=0.2, seed=3))
    assert [s.id for s in again[1]] == [s.id for s in val]
    draws = {frozenset(s.group for s in split_subjects(subjects, SplitConfig(seed=k))[1])
             for k in range(6)}  # fmt: skip
    assert len(draws) > 1


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_without_test_part_validation_is_unchanged(seed, fraction):
    subjects = _subjects()
    groups, sites = [s.group for s in subjects], [s.site for s in subjects]
    config = SplitConfig(val_fraction=fraction, seed=seed)
    expected = old_split_groups(groups, sites, config)
    assert split_groups(groups, sites, config) == expected
    (fold,) = plan_folds(groups, sites, config)
    assert fold.name == "" and fold.val == expected and fold.test == frozenset()
    assert fold.train == frozenset(groups) - expected


def test_fraction_split_edge_cases():
    groups, sites = ["a", "b", "c"], ["x"] * 3
    assert len(split_groups(groups, sites, SplitConfig(val_fraction=0.01))) == 1  # at least one
    assert len(split_groups(groups, sites, SplitConfig(val_fraction=0.9))) == 2  # one left to train
    assert split_groups(groups, sites, SplitConfig(val_fraction=0)) == set()
    with pytest.raises(DataError, match="only 1 person") as err:
        split_groups(["a", "a"], ["x", "x"], SplitConfig())
    assert "val_fraction = 0" not in str(err.value)  # it used to advise what training refuses


def test_training_folds_refuse_an_empty_validation_part():
    with pytest.raises(ConfigError, match=r"data\.split\.val_fraction = 0 leaves no validation.*"
                                          r"val_fraction > 0"):  # fmt: skip
        plan_folds(["a", "b", "c"], ["x"] * 3, SplitConfig(val_fraction=0))


def test_leave_one_site_out():
    subjects = _subjects()
    train, val = split_subjects(subjects, SplitConfig(method="site", val_site="site1"))
    assert {s.site for s in val} == {"site1"} and "site1" not in {s.site for s in train}
    assert len(train) + len(val) == len(subjects)


@pytest.mark.parametrize(
    "config, message",
    [
        (SplitConfig(method="site"), r"data\.split\.val_site must be set.*site0"),
        (SplitConfig(method="site", val_site="site7"), "not a site.*Valid choices: 'site0', 'site1', 'site2'"),
    ],
)
def test_site_split_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        split_subjects(_subjects(), config)


def test_site_split_needs_two_sites_and_one_site_per_person():
    with pytest.raises(ConfigError, match="two sites"):
        split_groups(["a", "b"], ["x", "x"], SplitConfig(method="site", val_site="x"))
    with pytest.raises(DataError, match="person 'a' appears at two sites"):
        split_groups(["a", "a"], ["x", "y"], SplitConfig())
    with pytest.raises(DataError, match="person 'a' appears at two sites"):
        plan_folds(["a", "b", "a"], ["x", "y", "y"], SplitConfig(test="loso"))


# --------------------------------------------------------------------------- test parts


def population(seed: int):
    """12 persons at 4 sites (3 each), 1-3 sessions per person, 1-3 slices per session, shuffled:
    entries as a SliceSet has them."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(12):
        for ses in range(int(rng.integers(1, 4))):
            rows += [(f"p{p:02d}", f"Site {p % 4}", f"p{p:02d}-ses{ses}")] * int(rng.integers(1, 4))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    groups, sites, subjects = (list(c) for c in zip(*rows))
    return groups, sites, subjects


def configs(seed: int, sites: list[str], subjects: list[str]):
    """Valid configs of every kind (validation site never fully in the test part)."""
    rng = np.random.default_rng(100 + seed)
    all_sites = sorted(set(sites))
    val_site = all_sites[seed % 4]
    other = [s for s in all_sites if s != val_site]
    away = [s for s, site in zip(subjects, sites) if site != val_site]
    for method, vf in [("fraction", 0.2), ("fraction", 0.5), ("site", None)]:
        base = dict(method=method, val_fraction=vf, seed=seed) if vf else dict(method=method)
        if method == "site":
            base["val_site"] = val_site
        yield SplitConfig(**base)
        for tf in (0.1, 0.25, 0.5):
            yield SplitConfig(**base, test="fraction", test_fraction=tf, test_seed=seed + 7)
        listed = list(rng.choice(away, size=3, replace=False)) + ["p00"] * (seed % 2)
        yield SplitConfig(**base, test="subjects", test_subjects=listed)
        yield SplitConfig(**base, test="sites", test_sites=list(rng.choice(other, 2, False)))
        if method == "fraction":
            yield SplitConfig(**base, test="loso")


@pytest.mark.parametrize("seed", range(4))
def test_folds_partition_persons_as_the_brute_force_reference(seed):
    groups, sites, subjects = population(seed)
    slices = fake_slices(groups, sites, subjects)
    site_of = dict(zip(groups, sites))
    person_of = dict(zip(subjects, groups)) | {g: g for g in groups}
    persons = set(groups)
    n_checked = 0
    for config in configs(seed, sites, subjects):
        folds = plan_folds(groups, sites, config, subjects=subjects)
        assert folds == plan_folds(groups, sites, config, subjects=subjects)  # deterministic
        if config.test == "none":
            expected_tests = [set()]
        elif config.test == "fraction":  # drawn outside a validation site
            pool = {p for p in persons if config.method != "site" or site_of[p] != config.val_site}
            leave = 1 if config.method == "site" else 2
            n = min(max(1, round(config.test_fraction * len(pool))), len(pool) - leave)
            assert len(folds) == 1 and len(folds[0].test) == n and folds[0].test <= pool
            expected_tests = [set(folds[0].test)]
        elif config.test == "subjects":
            expected_tests = [{person_of[s] for s in config.test_subjects}]
        elif config.test == "sites":
            expected_tests = [{p for p in persons if site_of[p] in config.test_sites}]
        else:
            expected_tests = [{p for p in persons if site_of[p] == s} for s in sorted(set(sites))]
            assert [f.name for f in folds] == [f"site-site-{k}" for k in range(4)]
        assert [set(f.test) for f in folds] == expected_tests, config
        for fold in folds:
            assert fold.train | fold.val | fold.test == persons
            assert not (fold.train & fold.val or fold.train & fold.test or fold.val & fold.test)
            assert fold.train and fold.val and bool(fold.test) == (config.test != "none")
            rest = persons - fold.test
            if config.method == "site":
                assert fold.val == {p for p in rest if site_of[p] == config.val_site}
            else:
                assert len(fold.val) == min(max(1, round(config.val_fraction * len(rest))),
                                            len(rest) - 1)  # fmt: skip
            parts = fold_slices(slices, fold)
            for part, people in zip(parts, (fold.train, fold.val, fold.test)):
                rows = [i for i, g in enumerate(groups) if g in people]  # brute force, in order
                assert part.images[:, 0, 0, 0].long().tolist() == rows
                assert set(part.group) == set(people)
            n_checked += 1
    assert n_checked >= 20


def test_test_draw_has_its_own_seed():
    groups, sites, subjects = population(0)
    draw = lambda **kw: plan_folds(groups, sites, SplitConfig(test="fraction", **kw))[0]  # noqa: E731
    assert len({draw(seed=s).test for s in range(5)}) == 1  # new validation draws, same test
    assert len({draw(seed=s).val for s in range(5)}) > 1
    assert len({draw(test_seed=s).test for s in range(5)}) > 1


def test_listed_sessions_take_their_whole_person():
    groups = ["p1", "p1", "p2", "p3", "p3", "p4"]
    subjects = ["p1-ses1", "p1-ses2", "p2", "p3-r1", "p3-r2", "p4"]
    sites = ["A", "A", "B", "B", "B", "A"]
    config = SplitConfig(test="subjects", test_subjects=["p1-ses2", "p3-r1"], val_fraction=0.5)
    (fold,) = plan_folds(groups, sites, config, subjects=subjects)
    assert fold.test == {"p1", "p3"} and fold.train | fold.val == {"p2", "p4"}
    slices = fake_slices(groups, sites, subjects)
    train, val, test = fold_slices(slices, fold)
    assert test.subject == ["p1-ses1", "p1-ses2", "p3-r1", "p3-r2"]
    two_part = split_slices(slices, config)  # the two-part view leaves the test persons out
    assert set(two_part[0].subject) | set(two_part[1].subject) == {"p2", "p4"}
    subj = [Subject(i, s, g) for i, s, g in zip(subjects, sites, groups)]
    s_train, s_val = split_subjects(subj, config)
    assert {s.id for s in s_train + s_val} == {"p2", "p4"}


def test_hand_computed_loso_and_site_validation():
    groups = ["a", "b", "c", "d", "e", "f"]
    sites = ["UCL", "UCL", "Milan", "Milan", "Philips", "Philips"]
    folds = plan_folds(groups, sites, SplitConfig(test="loso", val_fraction=0.2))
    assert [(f.name, sorted(f.test)) for f in folds] == [
        ("site-milan", ["c", "d"]), ("site-philips", ["e", "f"]), ("site-ucl", ["a", "b"]),
    ]  # fmt: skip
    assert all(len(f.val) == 1 and len(f.train) == 3 for f in folds)  # round(0.2 * 4) = 1
    config = SplitConfig(method="site", val_site="Milan", test="sites", test_sites=["UCL"])
    assert plan_folds(groups, sites, config) == [
        Fold("", frozenset("ef"), frozenset("cd"), frozenset("ab"))
    ]


def test_fold_names_are_path_safe_and_distinct():
    sites = ["Site A", "site-a", "Ünï/../x", "..", "b"]
    groups = [f"p{i}{k}" for i in range(5) for k in range(2)]
    folds = plan_folds(groups, [s for s in sites for _ in range(2)], SplitConfig(test="loso"))
    names = [f.name for f in folds]
    assert len(set(names)) == 5 and all(re.fullmatch(r"site-[a-z0-9][a-z0-9._-]*", n) for n in names)
    assert all(".." not in n and "/" not in n for n in names)


# --------------------------------------------------------------------------- bad input


GROUPS, SITES = ["a", "b", "c", "d"], ["x", "x", "y", "z"]


@pytest.mark.parametrize(
    "config, error, message",
    [
        (SplitConfig(test="sites", test_sites=["Y"]), ConfigError,
         r"data\.split\.test_sites: 'Y' is not a site.*Valid choices: 'x', 'y', 'z'\. Did you mean 'y'"),
        (SplitConfig(test="subjects", test_subjects=["aa"]), ConfigError,
         r"data\.split\.test_subjects: 'aa' is neither a subject nor a person.*Did you mean 'a'"),
        (SplitConfig(test="sites", test_sites=["x", "y", "z"]), DataError,
         r"only 0 person\(s\) left after the 4 test person\(s\).*hold out fewer"),
        (SplitConfig(test="subjects", test_subjects=["a", "b", "c"]), DataError,
         r"only 1 person\(s\) left after the 3 test"),
        (SplitConfig(method="site", val_site="x", test="subjects", test_subjects=["a", "b"]),
         ConfigError, r"every person of val_site 'x' is in the test part \['a', 'b'\]"),
        (SplitConfig(method="site", val_site="y", test="sites", test_sites=["x", "z"]),
         ConfigError, r"no person left to train on"),
    ],
)
def test_bad_splits_name_the_key_and_the_fix(config, error, message):
    with pytest.raises(error, match=message):
        plan_folds(GROUPS, SITES, config)


def test_loso_needs_two_sites_and_fraction_needs_three_persons():
    with pytest.raises(ConfigError, match=r"data\.split\.test = 'loso' needs at least 2 sites.*\['x'\]"):
        plan_folds(["a", "b", "c"], ["x"] * 3, SplitConfig(test="loso"))
    with pytest.raises(DataError, match=r"test = 'fraction' needs at least 3 persons.*has 2"):
        plan_folds(["a", "b"], ["x", "y"], SplitConfig(test="fraction"))
    with pytest.raises(DataError, match=r"at least 2 persons outside val_site 'y' \(test, training\)"):
        plan_folds(["a", "b"], ["x", "y"], SplitConfig(test="fraction", method="site", val_site="y"))
    with pytest.raises(ConfigError, match=r"evaluate\[0\]\.split\.test = 'loso' gives one split"):
        split_groups(GROUPS, SITES, SplitConfig(test="loso"), key="evaluate[0].split")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"test": "sites"}, r"test = 'sites' needs test_sites, e\.g\. test_sites = \[\"site1\"\]"),
        ({"test": "subjects"}, r"needs test_subjects"),
        ({"test_sites": ["x"]}, r"test_sites is set but test = 'none'; set test = 'sites'"),
        ({"test": "sites", "test_subjects": ["a"], "test_sites": ["x"]}, r"test_subjects is set"),
        ({"test": "loso", "method": "site", "val_site": "x"}, r"set method = 'fraction'"),
        ({"test": "sites", "test_sites": ["x"], "method": "site", "val_site": "x"},
         r"val_site 'x' is also in test_sites"),
        ({"test": "fraction", "test_fraction": 0}, r"test_fraction"),
        ({"test": "cv"}, r"test"),
    ],
)
def test_inconsistent_settings_are_refused_when_read(fields, message):
    with pytest.raises(ValidationError, match=message):
        SplitConfig(**fields)
    with pytest.raises(ConfigError, match=r"data\.split"):
        parse_config({"data": {"split": fields}})


def test_override_spellings():
    data = apply_overrides({}, ["data.split.test=sites", "data.split.test_sites=Milan"])
    assert parse_config(data).data.split.test_sites == ("Milan",)
    data = apply_overrides({}, ['data.split.test=subjects', 'data.split.test_subjects=["s1", "s2"]'])
    assert parse_config(data).data.split.test_subjects == ("s1", "s2")


def test_fold_and_fold_slices_check_their_input():
    with pytest.raises(DataError, match=r"persons \['b'\] are in two parts"):
        Fold("", frozenset("ab"), frozenset("b"), frozenset())
    slices = fake_slices(["a", "b", "q"], ["x", "x", "x"], ["a", "b", "q"])
    with pytest.raises(DataError, match=r"persons \['q'\] of these slices are in no part"):
        fold_slices(slices, Fold("", {"a"}, {"b"}, set()))
    train, val, test = fold_slices(slices.subset([0, 1]), Fold("", {"a"}, {"b"}, set()))
    assert (len(train), len(val), len(test)) == (1, 1, 0) and test.images.shape[1:] == (1, 2, 2)
    assert list(itertools.chain(train.group, val.group)) == ["a", "b"]
