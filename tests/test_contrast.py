"""ada contrast: two runs paired by (seed, fold, branch, set, person), per site and overall,
against scipy.stats on hand-built tables."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from ada_core.cli import main
from ada_core.errors import InputError
from ada_core.stats._contrast import contrast, contrast_runs
from ada_core.stats._table import Table

SEEDS = (0, 1, 2)
#: LOSO-like: fold site-x tests the persons of site x; site-a has two persons.
PERSONS = {"site-a": [("pa1", "A"), ("pa2", "A")], "site-b": [("pb1", "B")],
           "site-c": [("pc1", "C")]}  # fmt: skip


def table(values: dict, branches=("none", "gradcam"), seeds=SEEDS, persons=PERSONS,
          slices=2) -> dict[str, list]:  # fmt: skip
    """One row per slice; each person's slice values average to ``values[(seed, branch, p)]``."""
    cols: dict[str, list] = {c: [] for c in ("seed", "fold", "branch", "set", "person", "subject",
                                             "site", "slice", "dsc")}  # fmt: skip
    for seed in seeds:
        for fold, people in persons.items():
            for person, site in people:
                for branch in branches:
                    m = values[(seed, branch, person)]
                    for k in range(slices):  # m - 1, m + 1: the mean is m
                        row = (seed, fold, branch, "test", person, person + "_ses", site, k,
                               m + (2 * k - 1) * 1.0)
                        for c, v in zip(cols, row, strict=True):
                            cols[c].append(v)
    return cols


def values(rng: np.random.Generator, shift: float = 0.0) -> dict:
    return {(s, b, p): 60 + shift + rng.normal(scale=5) for s in SEEDS for b in ("none", "gradcam")
            for people in PERSONS.values() for p, _ in people}  # fmt: skip


def as_table(cols: dict) -> Table:
    return Table({k: np.asarray(v) for k, v in cols.items()})


def test_per_site_and_overall_against_scipy():
    rng = np.random.default_rng(3)
    va, vb = values(rng), values(rng, shift=2.0)
    rows = contrast(as_table(table(va)), as_table(table(vb)), set_="test", metric="dsc")
    by = {(r.branch, r.site): r for r in rows}
    assert sorted({r.site for r in rows}) == ["A", "B", "C", "all"]
    for branch in ("none", "gradcam"):
        p_sites = []
        for site, people in (("A", PERSONS["site-a"]), ("B", PERSONS["site-b"]),
                             ("C", PERSONS["site-c"])):  # fmt: skip
            d = np.array([[vb[(s, branch, p)] - va[(s, branch, p)] for p, _ in people]
                          for s in SEEDS])  # fmt: skip
            r = by[(branch, site)]
            if d.shape[1] == 1:  # one person: a paired t over the seeds (scipy)
                ref = stats.ttest_rel([vb[(s, branch, people[0][0])] for s in SEEDS],
                                      [va[(s, branch, people[0][0])] for s in SEEDS])
                ci = ref.confidence_interval(0.95)
                assert r.design == "seeds" and r.df == 2
                assert r.p == pytest.approx(ref.pvalue, rel=1e-9)
                assert (r.low, r.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
            else:  # seeds x persons crossed: checked through the two-way ANOVA below
                assert r.design == "crossed"
            assert r.diff == pytest.approx(d.mean(), abs=1e-9)
            assert r.n_persons == d.shape[1] and r.n_seeds == 3
            p_sites.append(r.p)
        # Holm over the three sites, by hand
        order = np.argsort(p_sites)
        adj = np.maximum.accumulate([(3 - i) * p_sites[j] for i, j in enumerate(order)])
        want = np.empty(3)
        want[order] = np.minimum(adj, 1)
        got = [by[(branch, s)].p_holm for s in "ABC"]
        np.testing.assert_allclose(got, want, rtol=1e-12)
        # overall: three folds as units, a one-sample t over the fold means (scipy)
        fold_means = [np.mean([vb[(s, branch, p)] - va[(s, branch, p)] for s in SEEDS
                               for p, _ in people]) for people in PERSONS.values()]  # fmt: skip
        ref = stats.ttest_1samp(fold_means, 0.0)
        r = by[(branch, "all")]
        assert r.design == "folds" and r.df == 2 and r.n_persons == 4
        assert r.diff == pytest.approx(np.mean(fold_means), abs=1e-9)
        assert r.p == pytest.approx(ref.pvalue, rel=1e-9)
        ci = ref.confidence_interval(0.95)
        assert (r.low, r.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert np.isnan(r.p_holm)


def test_crossed_site_matches_the_satterthwaite_formula():
    """Site A (2 persons x 3 seeds): the crossed design's SE from numpy's mean squares."""
    rng = np.random.default_rng(5)
    va, vb = values(rng), values(rng, shift=-1.0)
    r = next(x for x in contrast(as_table(table(va)), as_table(table(vb)), set_="test",
                                 metric="dsc") if x.site == "A" and x.branch == "none")  # fmt: skip
    d = np.array([[vb[(s, "none", p)] - va[(s, "none", p)] for p in ("pa1", "pa2")] for s in SEEDS])
    s_, n_ = d.shape
    ms_seed = n_ * d.mean(1).var(ddof=1)
    ms_person = s_ * d.mean(0).var(ddof=1)
    resid = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()
    ms_res = (resid**2).sum() / ((s_ - 1) * (n_ - 1))
    var = (ms_seed + max(ms_person - ms_res, 0) * (ms_person > ms_res)) / (s_ * n_)
    t = d.mean() / np.sqrt(var)
    assert 2 * stats.t.sf(abs(t), r.df) == pytest.approx(r.p, rel=1e-9)


def test_runs_that_do_not_pair_are_refused_naming_what_differs():
    rng = np.random.default_rng(0)
    v = values(rng)
    a = as_table(table(v))
    with pytest.raises(InputError, match=r"seed: only in A \[2\]"):
        contrast(a, as_table(table(v, seeds=(0, 1))), set_="test", metric="dsc")
    with pytest.raises(InputError, match=r"branch: only in A \['gradcam'\]"):
        contrast(a, as_table(table(v, branches=("none",))), set_="test", metric="dsc")
    with pytest.raises(InputError, match="no metric 'hd95'"):
        contrast(a, a, set_="test", metric="hd95")


def write(folder, cols) -> None:
    folder.mkdir()
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(zip(*cols.values(), strict=True))


def test_cli_reads_two_run_folders(tmp_path, capsys):
    rng = np.random.default_rng(1)
    write(tmp_path / "a", table(values(rng)))
    write(tmp_path / "b", table(values(rng, shift=3.0)))
    assert main(["contrast", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    api = contrast_runs(tmp_path / "a", tmp_path / "b")
    assert [r["diff"] for r in rows] == pytest.approx([r.diff for r in api])
    assert main(["contrast", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert "no results.csv" in capsys.readouterr().err


def test_the_settings_that_differ_are_named(tmp_path):
    from ada_core.stats._contrast import differing_settings

    for name, std in (("a", "none"), ("b", "histogram")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"name": name, "data": {"preprocess": {"standardise": std, "size": [64, 64]}}}))
    assert differing_settings(tmp_path / "a", tmp_path / "b") == [
        ("data.preprocess.standardise", "none", "histogram")]
