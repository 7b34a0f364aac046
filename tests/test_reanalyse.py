"""aggregate.reanalyse: a subset of a run's seeds gives what a run of only those seeds gives.

The positive-control bench scores many seed sets from one many-seed run on this equality, so it
is checked here against the real thing: a second study that lists only the subset.
"""

from __future__ import annotations

import json

import pytest

import ada_core
from ada_core.engine.aggregate import reanalyse
from ada_core.errors import DataError
from studykit import tiny_config

ATTRIBUTORS = [{"name": "gradcam"}, {"name": "vanilla"}, {"name": "random"}, {"name": "none"}]


def _comparisons(stats) -> list[tuple]:  # noqa: ANN001
    return sorted((c.family, c.set, c.metric, c.branch, c.control, round(c.diff, 9),
                   None if c.p is None else round(c.p, 9),
                   None if c.p_holm is None else round(c.p_holm, 9)) for c in stats.comparisons)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("reanalyse")
    made = {}
    for name, seeds in (("three", [0, 1, 2]), ("two", [0, 2])):
        cfg = tiny_config(out, name=name, attributors=ATTRIBUTORS, test=True, seeds=seeds,
                          robustness=False)
        result = ada_core.run(cfg, quiet=True, report=False)
        assert result.ok, result.failed
        made[name] = result.run_dir
    return made


def test_a_subset_of_seeds_is_the_study_of_those_seeds(runs):
    stats, said = reanalyse(runs["three"], [0, 2])
    alone = ada_core.load_run(runs["two"]).summary
    assert stats is not None and alone.statistics is not None
    assert list(stats.seeds) == list(alone.statistics.seeds) == [0, 2]
    assert _comparisons(stats) == _comparisons(alone.statistics)
    assert said.opening == alone.verdict.opening


def test_every_seed_reproduces_the_runs_own_verdict(runs):
    _, said = reanalyse(runs["three"], [0, 1, 2])
    summary = json.loads((runs["three"] / "summary.json").read_text())
    assert said.opening == summary["verdict"]["opening"]


def test_a_seed_the_run_does_not_hold_is_refused(runs):
    with pytest.raises(DataError, match=r"seeds \[0, 7\].*holds \[0, 1, 2\]"):
        reanalyse(runs["three"], [0, 7])
    with pytest.raises(DataError, match="not distinct"):
        reanalyse(runs["three"], [1, 1])
