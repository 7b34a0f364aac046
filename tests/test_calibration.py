"""The verdict's statistics are calibrated where the verdict decides: simulation under the null.

Studies are simulated as bench/bench_stats.py does (5 methods and 2 controls, each a trained
branch per seed, 3 sets; seed x branch, person x branch, scan and site effects) and analysed by
the production code: the batched core for the rates, and ``study_statistics`` on results tables
built from the same draws to show that the core *is* what a study computes. Acceptance bands
are binomial 99.9% intervals around the nominal rate, or the documented 1.5 alpha target where
the 30 comparisons of a study are correlated; each test also shows that the estimator this
project used before fails its band, so none of them could pass by construction.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from ada_core.stats import (
    PrimaryEndpoint,
    Table,
    design,
    holm,
    method_effect,
    study_statistics,
    t_test,
)

_spec = importlib.util.spec_from_file_location(
    "bench_stats", Path(__file__).resolve().parents[1] / "bench" / "bench_stats.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_stats"] = bench
_spec.loader.exec_module(bench)
Regime, simulate, M, C, SETS = bench.Regime, bench.simulate, bench.M, bench.C, bench.SETS


def _upper(rate: float, k: int) -> float:
    return sps.binom.interval(0.999, k, rate)[1] / k


def _ps(r, y, fold, set_=0):
    """(K, M*C) p of every method-control comparison on one set."""
    out = []
    for i in range(M):
        for c in range(M, M + C):
            d = design(y[:, i, set_] - y[:, c, set_], fold)
            out.append(t_test(d.mean, d.se, d.df))
    return np.stack(out, axis=1)


def _old_p(y2):
    """The estimator before this fix: the seed term dropped when MS_seed <= MS_res."""
    k, s, n = y2.shape
    m = y2.mean((1, 2))
    row, col = y2.mean(2), y2.mean(1)
    ms_a = n * ((row - m[:, None]) ** 2).sum(1) / (s - 1)
    ms_b = s * ((col - m[:, None]) ** 2).sum(1) / (n - 1)
    e = y2 - row[:, :, None] - col[:, None, :] + m[:, None, None]
    ms_e = (e**2).sum((1, 2)) / ((s - 1) * (n - 1))
    va, vb = np.maximum(0, ms_a - ms_e) / n, np.maximum(0, ms_b - ms_e) / s
    var = va / s + vb / n + ms_e / (s * n)
    num = (s * n * var) ** 2
    den = ((ms_a * (va > 0)) ** 2 / (s - 1) + (ms_b * (vb > 0)) ** 2 / (n - 1)
           + (ms_e * (1 - (va > 0) - (vb > 0))) ** 2 / ((s - 1) * (n - 1)))
    df = np.where(den > 0, num / np.where(den > 0, den, 1), n - 1.0)
    return t_test(m, np.sqrt(var), df)


def test_holms_first_step_is_nominal_at_3_seeds():
    r = Regime("seed-dominated", 3, (24,), 1.0, 0.7, 2.0)
    k, alpha = 20_000, 0.05 / 30
    y, _ = simulate(r, k, np.random.default_rng(1))
    p = _ps(r, y, None)
    rate = float(np.mean(p < alpha))
    assert rate <= 1.5 * alpha, rate
    old = np.mean(_old_p(y[:, 0, 0] - y[:, M, 0]) < alpha)
    assert old > 3 * alpha, old  # the dropped seed term: ~10x (issue 18)


@pytest.mark.parametrize("regime", [
    Regime("seed-dominated", 3, (24,), 1.0, 0.7, 2.0),
    Regime("no seed component", 3, (24,), 0.0, 0.7, 2.0),
    Regime("person-dominated", 5, (24,), 0.1, 1.5, 1.5),
], ids=lambda r: r.label)
def test_family_wise_error_of_30_comparisons_is_at_most_alpha(regime):
    k = 4000
    y, _ = simulate(regime, k, np.random.default_rng(2))
    p = np.concatenate([_ps(regime, y, None, st) for st in range(SETS)], axis=1)  # (K, 30)
    fwer = float(np.mean((holm(p) < 0.05).any(axis=1)))
    assert fwer <= _upper(0.05, k), fwer


def test_raters_of_one_person_are_averaged_before_testing():
    r = Regime("raters", 3, (8,), 0.5, 0.7, 1.0, scans=4, sd_scan=1.0)
    k = 4000
    y, scans = simulate(r, k, np.random.default_rng(3))
    fpr = float(np.mean(_ps(r, y, None)[:, 0] < 0.05))
    assert fpr <= _upper(0.05, k), fpr
    flat = (scans[:, 0, 0] - scans[:, M, 0]).reshape(k, 3, -1)  # every rater a subject
    d = design(flat)
    assert np.mean(t_test(d.mean, d.se, d.df) < 0.05) > _upper(0.05, k)  # too many claims


@pytest.mark.parametrize("persons", [(1, 1, 1), (1, 1, 2)])
def test_one_person_folds_keep_their_size(persons):
    r = Regime("one-person folds", 3, persons, 0.5, 1.0, 1.0, sd_site=0.5)
    k = 4000
    fold = np.repeat(np.arange(len(persons)), persons)
    y, _ = simulate(r, k, np.random.default_rng(4))
    fpr = float(np.mean(_ps(r, y, fold)[:, 0] < 0.05))
    assert fpr <= _upper(0.05, k), fpr
    seeds_only = y[:, 0, 0] - y[:, M, 0]  # the old fold rule: the spread over seeds only
    sm = seeds_only.mean(2)
    se = sm.std(1, ddof=1) / np.sqrt(3)
    assert np.mean(t_test(sm.mean(1), se, np.full(k, 2.0)) < 0.05) > 2 * 0.05


def test_omnibus_has_its_size():
    r = Regime("seed-dominated", 3, (24,), 1.0, 0.7, 2.0)
    k = 4000
    y, _ = simulate(r, k, np.random.default_rng(5))
    p = method_effect(y[:, :M, 0]).p
    assert float(np.mean(p < 0.05)) <= _upper(0.05, k)
    assert float(np.mean(p < 0.01)) <= _upper(0.01, k)


def _table(y, persons, seeds):
    """A results table of one study's person means (one slice per person)."""
    names = [f"m{i}" for i in range(M)] + ["random", "none"]
    cols = {c: [] for c in ("seed", "fold", "branch", "set", "person", "subject", "site",
                            "slice", "dsc")}
    fold = np.repeat(np.arange(len(persons)), persons)
    for b, name in enumerate(names):
        for s in range(seeds):
            for j in range(fold.size):
                f = f"site{fold[j]}" if len(persons) > 1 else ""
                for key, v in (("seed", s), ("fold", f), ("branch", name), ("set", "test"),
                               ("person", f"p{j}"), ("subject", f"p{j}"),
                               ("site", f or "s"), ("slice", 0), ("dsc", 50 + y[b, 0, s, j])):
                    cols[key].append(v)
    return Table({k: np.asarray(v) for k, v in cols.items()})


@pytest.mark.parametrize("persons", [(10,), (1, 1, 2)])
def test_study_statistics_computes_what_the_simulation_checks(persons):
    r = Regime("seed-dominated", 3, persons, 1.0, 0.7, 2.0, sd_site=0.3)
    fold = np.repeat(np.arange(len(persons)), persons) if len(persons) > 1 else None
    y, _ = simulate(r, 6, np.random.default_rng(6))
    for k in range(6):
        st = study_statistics(_table(y[k], persons, 3), branches=[f"m{i}" for i in range(M)],
                              controls=["random", "none"], sets=["test"], n_boot=10,
                              primary=PrimaryEndpoint(set="test", metric="dsc",
                                                      controls=("random", "none")))
        p = _ps(r, y[k:k + 1], fold)[0]
        got = [st.comparison(f"m{i}", c, "test", "dsc").p for i in range(M)
               for c in ("random", "none")]
        np.testing.assert_allclose(got, p, rtol=1e-9)
        np.testing.assert_allclose([c.p_holm for c in st.family("primary")], holm(p), rtol=1e-9)
        om = method_effect(y[k:k + 1, :M, 0], fold)
        assert st.omnibus.p == pytest.approx(float(om.p[0]), rel=1e-9)
