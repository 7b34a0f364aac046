"""ada_core.stats against scipy.stats, hand computations, brute-force loops and simulation.

Simulation tolerances: K simulated studies give a rate whose binomial 99.9% interval around
the nominal rate is the acceptance band (``_band``); with a fixed RNG seed each test is
deterministic, and a method that is off by more than the band fails.
"""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from ada_core.errors import DataError, InputError
from ada_core.stats import (
    Table,
    bootstrap_means,
    cohen_dz,
    crossed,
    design_se,
    holm,
    mde,
    read_table,
    seeds_needed,
    study_statistics,
    subject_means,
    t_interval,
    t_test,
)

K = 400  # simulated studies per regime


def _band(rate: float, k: int = K) -> tuple[float, float]:
    lo, hi = sps.binom.interval(0.999, k, rate)
    return lo / k, hi / k


def _sim(rng, k, s, n, sa, sb, se, mu=0.0, fold=None):
    """Paired differences: seed x branch, subject x branch and residual components.

    With ``fold`` (N,), each fold is a separately trained model with its own seed effects.
    """
    fold = np.zeros(n, dtype=int) if fold is None else fold
    return (mu + sa * rng.standard_normal((k, s, fold.max() + 1))[:, :, fold]
            + sb * rng.standard_normal((k, 1, n)) + se * rng.standard_normal((k, s, n)))


# ------------------------------------------------------------------ tables

def make_table(rng, *, seeds=3, subjects=12, slices=4, branches=("vanilla", "gradcam",
               "random", "none"), sets=("val",), effect=None, folds=("",), sd_seed=0.5,
               sd_subj=0.5, sd_res=1.5, sd_slice=2.0, nan_every=0):
    """A results table (columns) with per-branch seed and subject effects."""
    effect = effect or {}
    cols = {c: [] for c in ("seed", "fold", "branch", "set", "person", "subject", "site", "slice",
                            "dsc", "hsd")}
    base = {f"{f}s{j}": rng.normal(80, 5) for f in folds for j in range(subjects)}
    for st, b in itertools.product(sets, branches):
        a = rng.normal(0, sd_seed, seeds)
        v = {k: rng.normal(0, sd_subj) for k in base}
        for s, f, j, sl in itertools.product(range(seeds), folds, range(subjects),
                                             range(slices)):
            k = f"{f}s{j}"
            y = base[k] + a[s] + v[k] + effect.get(b, 0.0) + rng.normal(0, sd_res) \
                + rng.normal(0, sd_slice)
            cols["seed"].append(s)
            cols["fold"].append(f)
            cols["branch"].append(b)
            cols["set"].append(st)
            cols["person"].append(k)
            cols["subject"].append(k)
            cols["site"].append(f or "ucl")
            cols["slice"].append(sl)
            cols["dsc"].append(y)
            undefined = nan_every and (sl + j) % nan_every == 0
            cols["hsd"].append(math.nan if undefined else 10 - y / 10)
    return {k: np.asarray(v) for k, v in cols.items()}


def write_csv(path, cols, rows=None):
    names = list(cols)
    n = len(cols["seed"])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(n) if rows is None else rows:
            w.writerow(["" if isinstance(cols[c][i], float) and math.isnan(cols[c][i])
                        else cols[c][i] for c in names])


def test_read_table_round_trip(tmp_path):
    cols = make_table(np.random.default_rng(0), seeds=2, subjects=3, slices=2, nan_every=3)
    write_csv(tmp_path / "results.csv", cols)
    t = read_table(tmp_path / "results.csv")
    assert len(t) == len(cols["seed"]) and t.metrics == ("dsc", "hsd")
    assert t["seed"].dtype == np.int64 and t["fold"].tolist() == [""] * len(t)
    np.testing.assert_allclose(t["dsc"], cols["dsc"])
    assert np.array_equal(np.isnan(t["hsd"]), np.isnan(cols["hsd"]))


@pytest.mark.parametrize("edit, match", [
    (lambda r: [x.pop(5) for x in r], r"missing column\(s\) \['subject'\]"),
    (lambda r: r[3].__setitem__(8, "0.8x"), r"line 4, column 'dsc': '0.8x' is not a number"),
    (lambda r: r[2].__setitem__(0, "1.5"), r"line 3, column 'seed': '1.5' is not an integer"),
    (lambda r: r[5].append("7"), r"line 6: 11 fields, the header has 10"),
    (lambda r: r[4].__setitem__(9, "inf"), r"line 5, column 'hsd': infinite"),
    (lambda r: r.append(list(r[1])), r"lines 2 and \d+ have the same key"),
    (lambda r: r[1].__setitem__(6, "zur"), r"line 3: subject 's0' has site 'ucl' here and 'zur'"),
    (lambda r: r[1].__setitem__(4, "p9"), r"line 3: subject 's0' has person 's0' here and 'p9'"),
    (lambda r: r.__setitem__(slice(1, None), []), r"header but no rows"),
])
def test_read_table_errors_name_file_line_and_column(tmp_path, edit, match):
    cols = make_table(np.random.default_rng(0), seeds=1, subjects=2, slices=2)
    write_csv(tmp_path / "r.csv", cols)
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with open(tmp_path / "r.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(DataError, match=match) as e:
        read_table(tmp_path / "r.csv")
    assert "r.csv" in str(e.value)


def test_read_table_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read results table"):
        read_table(tmp_path / "nope.csv")


def test_subject_means_against_a_loop():
    cols = make_table(np.random.default_rng(1), seeds=2, subjects=3, slices=5, nan_every=2)
    cols["hsd"][(cols["subject"] == "s0") & (cols["seed"] == 1)] = np.nan  # all undefined
    t = Table(cols)
    sm = subject_means(t, "val", "hsd")
    ref: dict[tuple, list[float]] = {}
    for i in range(len(t)):
        ref.setdefault((t["seed"][i], t["fold"][i], t["branch"][i], t["subject"][i]),
                       []).append(t["hsd"][i])
    assert len(sm.mean) == len(ref)
    for g in range(len(sm.mean)):
        vals = ref[(sm.seed[g], sm.fold[g], sm.branch[g], sm.subject[g])]
        ok = [v for v in vals if not math.isnan(v)]
        assert sm.n_slices[g] == len(vals) and sm.n_undefined[g] == len(vals) - len(ok)
        if ok:
            assert sm.mean[g] == pytest.approx(sum(ok) / len(ok))
        else:
            assert math.isnan(sm.mean[g])
    with pytest.raises(InputError, match=r"unknown set 'vla'.*Did you mean 'val'"):
        subject_means(t, "vla", "dsc")


# ------------------------------------------------------------------ agreement with references

def test_one_seed_is_scipy_one_sample_t():
    d = np.array([[0.3, -1.2, 2.5, 0.8, 1.1, -0.4, 0.9]])
    r = crossed(d)
    ref = sps.ttest_1samp(d[0], 0)
    assert r.df[0] == 6 and t_test(r.mean, r.se, r.df)[0] == pytest.approx(ref.pvalue)
    lo, hi = t_interval(r.mean, r.se, r.df, 0.9)
    assert (lo[0], hi[0]) == pytest.approx(tuple(ref.confidence_interval(0.9)))
    assert (lo[0], hi[0]) == pytest.approx(sps.t.interval(0.9, 6, d.mean(), sps.sem(d[0])))


@pytest.mark.parametrize("axis", [0, 1])
def test_pure_seed_or_pure_subject_variation_is_a_t_over_that_factor(axis):
    rng = np.random.default_rng(2)
    v = rng.normal(1, 2, 5)
    d = np.repeat(v[:, None], 7, axis=1) if axis == 0 else np.repeat(v[None], 4, axis=0)
    r = crossed(d)
    ref = sps.ttest_1samp(v, 0)
    assert r.df[0] == pytest.approx(4)
    assert t_test(r.mean, r.se, r.df)[0] == pytest.approx(ref.pvalue)


def test_crossed_mean_squares_by_hand():
    rng = np.random.default_rng(3)
    s, n = 3, 6
    d = rng.normal(size=(s, 1)) + rng.normal(size=(1, n)) + rng.normal(size=(s, n))
    m = d.mean()
    ss_a = sum(n * (d[i].mean() - m) ** 2 for i in range(s))
    ss_b = sum(s * (d[:, j].mean() - m) ** 2 for j in range(n))
    ss_e = sum((d[i, j] - d[i].mean() - d[:, j].mean() + m) ** 2
               for i in range(s) for j in range(n))
    ma, mb, me = ss_a / (s - 1), ss_b / (n - 1), ss_e / ((s - 1) * (n - 1))
    assert ma > me and mb > me  # both components present in this draw
    r = crossed(d)
    var = (ma + mb - me) / (s * n)
    df = (ma + mb - me) ** 2 / (ma**2 / (s - 1) + mb**2 / (n - 1) + me**2 / ((s - 1) * (n - 1)))
    assert r.se[0] ** 2 == pytest.approx(var) and r.df[0] == pytest.approx(df)
    assert (r.s2_seed[0], r.s2_subj[0], r.s2_res[0]) == pytest.approx(
        ((ma - me) / n, (mb - me) / s, me))
    assert r.se[0] ** 2 == pytest.approx(r.s2_seed[0] / s + r.s2_subj[0] / n
                                         + r.s2_res[0] / (s * n))


def test_no_seed_component_drops_the_seed_term():
    d = np.array([[1.0, 2.0, 4.0, 0.0], [1.1, 1.9, 4.0, 0.1], [0.9, 2.1, 4.0, -0.1]])
    r = crossed(d)
    col = d.mean(axis=0)
    assert r.s2_seed[0] == 0
    # MS_seed < MS_res: Var = MS_subj / (S N) = var(subject means) / N, df = N - 1
    assert r.se[0] ** 2 == pytest.approx(col.var(ddof=1) / 4) and r.df[0] == pytest.approx(3)


def test_folds_combine_by_subject_weight():
    rng = np.random.default_rng(4)
    d = rng.normal(size=(1, 5))
    fold = np.array([0, 0, 1, 1, 1])
    r = crossed(d, fold)
    a, b = d[0, :2], d[0, 2:]
    var = (2 / 5) ** 2 * a.var(ddof=1) / 2 + (3 / 5) ** 2 * b.var(ddof=1) / 3
    assert r.se[0] ** 2 == pytest.approx(var) and r.fold_sizes == (2, 3)
    assert r.mean[0] == pytest.approx(d.mean())


def test_bootstrap_variance_is_the_pigeonhole_formula():
    rng = np.random.default_rng(5)
    d = rng.normal(size=(4, 1)) + rng.normal(size=(1, 9)) + rng.normal(size=(4, 9))
    boot = bootstrap_means(d, None, 40_000, np.random.default_rng(6))[0]
    row, col, m = d.mean(1), d.mean(0), d.mean()
    g = d - row[:, None] - col[None] + m
    # Var* = var(row effects)/S + var(col effects)/N + var(interaction)/(S N), ddof 0
    ref = ((row - m) ** 2).mean() / 4 + ((col - m) ** 2).mean() / 9 + (g**2).mean() / 36
    assert boot.mean() == pytest.approx(m, abs=4 * math.sqrt(ref / 40_000))
    assert boot.var() == pytest.approx(ref, rel=0.03)


def test_bootstrap_keeps_fold_sizes():
    d = np.array([[0.0, 0.0, 10.0]])  # fold 1 always holds one of three subjects
    boot = bootstrap_means(d, np.array([0, 0, 1]), 200, np.random.default_rng(0))
    np.testing.assert_allclose(boot, 10 / 3)


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return  # statsmodels is optional; the hand computation above is the reference
    np.testing.assert_allclose(holm(p[:4]), multipletests(p[:4], method="holm")[1])


def test_cohen_dz_by_hand():
    d = np.array([[1.0, 2.0, 0.0, 3.0], [3.0, 2.0, 2.0, 1.0]])  # subject means 2, 2, 1, 2
    assert cohen_dz(d) == pytest.approx(1.75 / 0.5)
    assert np.isnan(cohen_dz(np.ones((2, 3))))


def test_design_se_is_the_documented_formula():
    comps = np.array([[0.4, 0.9, 2.0]])
    se, df = design_se(comps, (24,), np.array([3, 10]))
    ref = np.sqrt(0.4 / np.array([3, 10]) + 0.9 / 24 + 2.0 / (np.array([3, 10]) * 24))
    np.testing.assert_allclose(se, ref)
    s, n = 3, 24  # Satterthwaite with the expected mean squares of that design
    ea, eb, ee = 2.0 + n * 0.4, 2.0 + s * 0.9, 2.0
    df_ref = (ea + eb - ee) ** 2 / (ea**2 / (s - 1) + eb**2 / (n - 1) + ee**2 / ((s - 1) * 23))
    assert df[0] == pytest.approx(df_ref)


@pytest.mark.parametrize("df", [8.0, 30.0])
def test_mde_has_the_stated_power_by_noncentral_t(df):
    se = 0.7
    delta = mde(se, df)
    crit = sps.t.ppf(0.975, df)
    power = sps.nct.sf(crit, df, delta / se) + sps.nct.cdf(-crit, df, delta / se)
    assert power == pytest.approx(0.8, abs=0.015)


def test_seeds_needed_unreachable_when_subject_term_is_too_large():
    need, limit = seeds_needed(np.array([[0.1, 12.0, 1.0]]), (24,), 0.5)
    assert need is None
    assert limit == pytest.approx(mde(math.sqrt(12.0 / 24), 23))


@pytest.mark.parametrize("s2_seed", [0.5, 4.0, 30.0])
def test_seeds_needed_is_the_first_seed_count_that_resolves(s2_seed):
    comps = np.array([[s2_seed, 0.2, 2.0]])
    need, _ = seeds_needed(comps, (40,), 0.5)
    brute = next(s for s in range(2, 5000)
                 if mde(*design_se(comps, (40,), np.array([s]))) <= 0.5)
    assert need == brute


def test_seeds_needed_gives_the_stated_power_in_simulation():
    sa, sb, se_, n = 0.6, 0.5, 1.5, 24
    comps = np.array([[sa**2, sb**2, se_**2]])
    need, _ = seeds_needed(comps, (n,), 0.5)
    se, _ = design_se(comps, (n,), np.array([need - 1, need]))
    assert se[1] < se[0]
    d = _sim(np.random.default_rng(7), K, need, n, sa, sb, se_, mu=0.5)
    r = crossed(d)
    power = np.mean(t_test(r.mean, r.se, r.df) < 0.05)
    lo, hi = _band(0.8)
    assert lo <= power <= hi, (need, power)


# ------------------------------------------------------------------ simulation: calibration

REGIMES = {  # (seeds, subjects, sd seed, sd subject, sd residual) of the differences
    "seed-dominated, 3 seeds": (3, 24, 1.0, 0.7, 2.0),
    "seed-dominated, 5 seeds": (5, 24, 1.0, 0.7, 2.0),
    "subject-dominated, 3 seeds": (3, 24, 0.1, 1.0, 1.5),
    "leave-one-site-out, 3 folds": (3, 18, 0.5, 0.7, 1.5),
}


@pytest.mark.parametrize("regime", REGIMES)
def test_no_effect_ci_covers_zero_and_p_is_uniform(regime):
    s, n, sa, sb, se = REGIMES[regime]
    rng = np.random.default_rng(list(REGIMES).index(regime))
    fold = np.repeat(np.arange(3), n // 3) if "folds" in regime else None
    d = _sim(rng, K, s, n, sa, sb, se, fold=fold)
    r = crossed(d, fold)
    lo, hi = t_interval(r.mean, r.se, r.df)
    cover = np.mean((lo < 0) & (hi > 0))
    fpr = np.mean(t_test(r.mean, r.se, r.df) < 0.05)
    c_lo, _ = _band(0.95)
    _, f_hi = _band(0.05)
    assert c_lo <= cover <= 0.99, cover  # zero-truncated components make it conservative
    assert fpr <= f_hi, fpr


def test_planted_effect_is_detected_and_covered():
    s, n, sa, sb, se, delta = 5, 24, 0.3, 0.7, 2.0, 1.0
    d = _sim(np.random.default_rng(8), K, s, n, sa, sb, se, mu=delta)
    r = crossed(d)
    lo, hi = t_interval(r.mean, r.se, r.df)
    power = np.mean(t_test(r.mean, r.se, r.df) < 0.05)
    cover = np.mean((lo < delta) & (hi > delta))
    assert power >= 0.85, power
    assert _band(0.95)[0] <= cover <= _band(0.95)[1], cover


def test_few_seed_bootstrap_undercovers_which_is_why_ci_is_the_t_interval():
    s, n, sa, sb, se = REGIMES["seed-dominated, 3 seeds"]
    rng = np.random.default_rng(9)
    d = _sim(rng, K, s, n, sa, sb, se)
    boot = bootstrap_means(d, None, 400, rng)
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=1)
    assert np.mean((lo < 0) & (hi > 0)) < _band(0.95)[0]


def test_wilcoxon_over_subjects_is_anticonservative_under_seed_effects():
    s, n, sa, sb, se = REGIMES["seed-dominated, 3 seeds"]
    d = _sim(np.random.default_rng(10), K, s, n, sa, sb, se)
    naive = sps.wilcoxon(d.mean(axis=1), axis=1).pvalue  # the test this module does not use
    assert np.mean(naive < 0.05) > 3 * _band(0.05)[1]


# ------------------------------------------------------------------ study_statistics

def test_study_statistics_numbers_against_brute_force():
    cols = make_table(np.random.default_rng(11), seeds=3, subjects=6, slices=3, nan_every=4,
                      effect={"gradcam": 2.0})
    st = study_statistics(Table(cols), branches=["vanilla", "gradcam"], controls=["random"],
                          metrics=["dsc", "hsd"], n_boot=300)
    t = Table(cols)
    for metric, sign in (("dsc", 1), ("hsd", -1)):
        c = st.comparison("gradcam", "random", "val", metric)
        means = {}
        for i in range(len(t)):
            if not math.isnan(t[metric][i]):
                means.setdefault((t["branch"][i], t["seed"][i], t["subject"][i]),
                                 []).append(t[metric][i])
        diffs = [sign * (np.mean(means[("gradcam", s, j)]) - np.mean(means[("random", s, j)]))
                 for s in range(3) for j in (f"s{k}" for k in range(6))]
        assert c.diff == pytest.approx(np.mean(diffs))
        assert c.higher_is_better is (sign == 1) and c.ci.low < c.diff < c.ci.high
        assert c.orientation.startswith("gradcam - random" if sign == 1 else "random - gradcam")
    assert st.comparison("gradcam", "random", "val", "dsc").diff > 0
    assert st.comparison("gradcam", "random", "val", "hsd").diff > 0  # lower HSD = better
    e = st.estimate("gradcam", "val", "hsd")
    assert e.n_slices == 3 * 6 * 3 and e.n_undefined == int(
        np.isnan(cols["hsd"][(cols["branch"] == "gradcam")]).sum())
    ps = [c.p for c in st.comparisons]
    np.testing.assert_allclose([c.p_holm for c in st.comparisons], holm(ps))
    assert all(c.holm_family == 4 for c in st.comparisons)
    again = study_statistics(Table(cols), branches=["vanilla", "gradcam"], controls=["random"],
                             metrics=["dsc", "hsd"], n_boot=300)
    assert again == st  # the bootstrap is seeded
    assert type(st).model_validate_json(st.model_dump_json()) == st


def test_single_seed_falls_back_to_subjects_and_says_so():
    cols = make_table(np.random.default_rng(12), seeds=1, subjects=8, slices=2)
    st = study_statistics(Table(cols), branches=["gradcam"], controls=["random"], n_boot=200)
    c = st.comparison("gradcam", "random", "val", "dsc")
    e = st.estimate("gradcam", "val", "dsc")
    t = Table(cols)
    sm = subject_means(t, "val", "dsc")
    g = sm.mean[sm.branch == "gradcam"] - sm.mean[sm.branch == "random"]
    ref = sps.ttest_1samp(g, 0)
    assert c.p == pytest.approx(ref.pvalue) and c.interval == "subjects only (1 seed)"
    assert (c.ci.low, c.ci.high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert "1 seed" in c.test and c.var_seed is None and c.seeds_needed is None
    assert "cannot be estimated from 1 seed" in c.seeds_note
    assert e.ci_t.method == "t over subject means (1 seed)" and "subjects only" in e.note
    assert st.notes and "1 seed" in st.notes[0]


def test_convergence_sets_are_compared_like_any_set():
    cols = make_table(np.random.default_rng(13), seeds=3, subjects=10, slices=2,
                      sets=("val", "val@ada3"), effect={"gradcam": 5.0})
    st = study_statistics(Table(cols), branches=["gradcam"], controls=["random"],
                          sets=["val@ada3"], n_boot=200)
    c = st.comparison("gradcam", "random", "val@ada3", "dsc")
    assert c.set == "val@ada3" and c.n_seeds == 3 and c.n_subjects == 10 and c.diff > 2


def test_folds_pair_subjects_within_their_fold():
    cols = make_table(np.random.default_rng(14), seeds=2, subjects=4, slices=2,
                      folds=("ucl", "zur"))
    st = study_statistics(Table(cols), branches=["gradcam"], controls=["random"], n_boot=200)
    assert st.comparison("gradcam", "random", "val", "dsc").n_subjects == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"branches": ["gradcm"]}, r"unknown branch 'gradcm'.*Did you mean 'gradcam'"),
    ({"branches": ["gradcam"], "controls": ["rand"]}, r"unknown control 'rand'.*'random'"),
    ({"branches": ["gradcam"], "sets": ["test"]}, r"unknown set 'test'. Valid choices: 'val'"),
    ({"branches": ["gradcam"], "metrics": ["iou"]}, r"unknown metric 'iou'"),
    ({"branches": ["gradcam"], "seeds": [0, 0]}, r"seeds lists a seed twice"),
    ({"branches": []}, r"at least one branch"),
])
def test_study_statistics_rejects_unknown_names(kwargs, match):
    t = Table(make_table(np.random.default_rng(15), seeds=2, subjects=3, slices=1))
    with pytest.raises(InputError, match=match):
        study_statistics(t, **{"controls": ["random"], **kwargs})


def test_control_missing_for_a_seed_names_the_seed():
    cols = make_table(np.random.default_rng(16), seeds=3, subjects=3, slices=1)
    keep = ~((cols["branch"] == "random") & (cols["seed"] == 2))
    t = Table({k: v[keep] for k, v in cols.items()})
    with pytest.raises(DataError, match=r"control 'random' has seeds \[0, 1\].*seed\(s\) \[2\]"):
        study_statistics(t, branches=["gradcam"], controls=["random"])
    ok = study_statistics(t, branches=["gradcam"], controls=["random"], seeds=[0, 1], n_boot=50)
    assert ok.seeds == (0, 1)


def test_subjects_not_crossed_with_seeds_is_an_error():
    cols = make_table(np.random.default_rng(17), seeds=2, subjects=3, slices=1)
    keep = ~((cols["branch"] == "gradcam") & (cols["seed"] == 1) & (cols["subject"] == "s2"))
    t = Table({k: v[keep] for k, v in cols.items()})
    with pytest.raises(DataError, match=r"no rows for subject 's2' .* in seed 1"):
        study_statistics(t, branches=["gradcam"], controls=["random"])


def test_duplicate_rows_in_memory_are_an_error():
    cols = make_table(np.random.default_rng(18), seeds=1, subjects=2, slices=1)
    dup = {k: np.concatenate([v, v[:1]]) for k, v in cols.items()}
    with pytest.raises(DataError, match="same key"):
        Table(dup)


def test_docs_recipe_with_pandas_reproduces_study_statistics(tmp_path):
    pytest.importorskip("pandas", reason="pandas is optional: the docs recipe needs it")
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "statistics.md").read_text()
    code = doc.split("<!-- recipe -->\n```python\n", 1)[1].split("```", 1)[0]
    cols = make_table(np.random.default_rng(19), seeds=3, subjects=8, slices=3, nan_every=5,
                      effect={"gradcam": 1.0})
    write_csv(tmp_path / "results.csv", cols)
    env = {"path": tmp_path / "results.csv"}
    exec(code, env)  # noqa: S102 - the documented recipe, run as a reader would
    c = study_statistics(read_table(tmp_path / "results.csv"), branches=["gradcam"],
                         controls=["random"], n_boot=100).comparison("gradcam", "random",
                                                                     "val", "dsc")
    assert env["m"] == pytest.approx(c.diff) and env["se"] == pytest.approx(c.se)
    assert env["p"] == pytest.approx(c.p) and env["dof"] == pytest.approx(c.df)
    assert tuple(env["ci"]) == pytest.approx((c.ci.low, c.ci.high))
