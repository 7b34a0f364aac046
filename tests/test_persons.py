"""Persons in sight: per-person scores and the failing-person flag, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from ada_core.engine.persons import FLOOR, failing, person_scores
from ada_core.stats import Table


def _table(values):
    """values: {(person, site): {branch: [DSC per seed]}}, one slice per person and seed."""
    cols = {c: [] for c in ("seed", "fold", "branch", "set", "person", "subject", "site",
                            "slice", "dsc")}
    for (person, site), per in values.items():
        for branch, seeds in per.items():
            for s, v in enumerate(seeds):
                for k, x in (("seed", s), ("fold", ""), ("branch", branch), ("set", "test"),
                             ("person", person), ("subject", person), ("site", site),
                             ("slice", 0), ("dsc", v)):
                    cols[k].append(x)
    return Table({k: np.asarray(v) for k, v in cols.items()})


def test_person_scores_are_the_mean_and_sd_over_seeds():
    t = _table({("p1", "a"): {"x": [50.0, 60.0, 70.0]}, ("p2", "b"): {"x": [10.0, 20.0, 30.0]}})
    sc = {s.person: s for s in person_scores(t, "test")}
    assert sc["p1"].mean == pytest.approx(60.0) and sc["p1"].sd == pytest.approx(10.0)
    assert sc["p2"].site == "b" and sc["p2"].n_seeds == 3
    assert person_scores(t, "val") == []


def test_a_person_failing_in_every_branch_is_named_and_one_failing_in_one_is_not():
    good = {"std": [60.0, 62.0], "gradcam": [58.0, 61.0], "random": [59.0, 63.0]}
    t = _table({
        ("sub-1", "ucl"): good, ("sub-2", "zur"): good,
        ("sub-3", "milan"): {"std": [50.0, 55.0], "gradcam": [57.0, 59.0], "random": [52, 54]},
        ("sub-9", "new"): {"std": [3.0, 5.0], "gradcam": [12.0, 14.0], "random": [8.0, 9.0]},
        ("sub-5", "ucl"): {"std": [5.0, 6.0], "gradcam": [55.0, 57.0], "random": [7.0, 8.0]},
    })
    scores, notes = failing(person_scores(t, "test"))
    assert {s.person for s in scores if s.failing} == {"sub-9"}  # sub-5 recovers in gradcam
    assert len(notes) == 1
    assert notes[0].startswith("sub-9 (site new) fails in every branch on the test set: DSC "
                               "4.0\u201313.0 against a median of")


def test_relative_rule_flags_a_person_above_the_floor():
    t = _table({("a", "s"): {"x": [90.0]}, ("b", "s"): {"x": [88.0]}, ("c", "s"): {"x": [30.0]}})
    scores, notes = failing(person_scores(t, "test"))
    assert 30.0 > FLOOR and [s.person for s in scores if s.failing] == ["c"]  # < half of 89
    t = _table({("a", "s"): {"x": [90.0]}, ("b", "s"): {"x": [88.0]}, ("c", "s"): {"x": [50.0]}})
    assert failing(person_scores(t, "test"))[1] == []
