"""ada_core.verdict: sentences follow the numbers, and quote them exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_stats import make_table

from ada_core.errors import InputError
from ada_core.stats import Table, study_statistics
from ada_core.verdict import verdict

METHODS = ["vanilla", "gradcam", "guided_backprop"]
#: How the study names the controls (the engine passes its branches' titles).
TITLES = {"random": "random erasing", "none": "longer training without ADA"}


def _stats(effect=None, seeds=4, subjects=16, sets=("robustness",), **kw):
    cols = make_table(np.random.default_rng(kw.pop("rng", 0)), seeds=seeds, subjects=subjects,
                      slices=2, sets=sets, branches=(*METHODS, "random", "none"),
                      effect=effect, sd_seed=kw.pop("sd_seed", 0.3), **kw)
    return study_statistics(Table(cols), branches=METHODS, controls=["random", "none"],
                            sets=list(sets), metrics=["dsc", "hsd"], n_boot=200)


def _num(text: str) -> float:
    return float(text.replace("\u2212", "-"))


NUM = r"([+\u2212]?\d+\.\d+)"


def test_no_effect_says_no_method_beats_the_control_and_quotes_the_largest():
    st = _stats()
    lines = verdict(st, titles=TITLES, controls=["random"])
    head = next(s for s in lines if "none of the 3 interpretability methods" in s)
    assert head.startswith("Over 4 seeds \u00d7 16 subjects") and "random erasing" in head
    m = re.search(rf"largest: (\w+) {NUM} points, 95% CI {NUM} to {NUM}, Holm p = ([\d.]+)",
                  head)
    assert m, head
    comps = [st.comparison(b, "random", "robustness", "dsc") for b in METHODS]
    top = max(comps, key=lambda c: c.diff)
    assert m[1] == top.branch
    d = 2 if top.ci.high - top.ci.low < 1 else 1
    assert _num(m[2]) == round(top.diff, d)
    assert (_num(m[3]), _num(m[4])) == (round(top.ci.low, d), round(top.ci.high, d))
    assert float(m[5]) == pytest.approx(top.p_holm, abs=0.006)
    power = next(s for s in lines if s.startswith("Differences below"))
    lo, hi = (min(c.mde for c in comps), max(c.mde for c in comps))
    span = re.search(r"below ([\d.]+)(?:\u2013([\d.]+))? points", power)
    assert float(span[1]) == pytest.approx(lo, abs=0.051)
    assert float(span[2] or span[1]) == pytest.approx(hi, abs=0.051)
    need = max(c.seeds_needed for c in comps if c.seeds_needed is not None)
    assert f"about {need} seeds would resolve 0.5 points" in power


def test_planted_effect_flips_the_sentence():
    before = verdict(_stats(), titles=TITLES, controls=["random"])
    after = verdict(_stats(effect={"gradcam": 4.0}), titles=TITLES, controls=["random"])
    assert not any("gradcam beats" in s for s in before)
    st = _stats(effect={"gradcam": 4.0})
    c = st.comparison("gradcam", "random", "robustness", "dsc")
    assert c.significant and c.ci.low > 0
    hit = next(s for s in after if "gradcam beats random erasing (random) on robustness DSC" in s)
    assert f"+{c.diff:.1f} points" in hit and f"over {c.holm_family} comparisons" in hit
    assert f"d_z = +{c.effect_size:.2f}" in hit
    assert any(s.startswith("The other 2 methods show no difference") for s in after)


def test_worse_method_is_called_worse():
    st = _stats(effect={"vanilla": -4.0})
    lines = verdict(st, titles=TITLES, controls=["random"])
    c = st.comparison("vanilla", "random", "robustness", "dsc")
    hit = next(s for s in lines if "vanilla is worse than random erasing (random)" in s)
    assert f"\u2212{abs(c.diff):.1f} points" in hit and c.ci.high < 0


def test_lower_is_better_metric_states_the_orientation():
    st = _stats(effect={"gradcam": 4.0})  # higher DSC -> lower HSD in make_table
    lines = verdict(st, titles=TITLES, metric="hsd", controls=["random"])
    hit = next(s for s in lines if "gradcam beats random erasing (random) on robustness HSD" in s)
    assert " mm" in hit and "+" in hit.split(":")[1][:3]
    assert lines[0].startswith("HSD is lower-is-better: each difference below is control "
                               "\u2212 method")


def test_single_seed_is_labelled():
    st = _stats(seeds=1)
    lines = verdict(st, titles=TITLES)
    assert lines[0].startswith("Only 1 seed (0): every interval and test below is over the 16 "
                               "subjects only")
    assert any("seeds needed cannot be projected" in s for s in lines)
    assert all(c.interval == "subjects only (1 seed)" for c in st.comparisons)


def test_missing_branches_and_untestable_designs_are_named():
    lines = verdict(_stats(), titles=TITLES, missing=["guided_gradcam", "input_x_gradient"])
    assert "Not compared (missing or failed): guided_gradcam, input_x_gradient." in lines
    tiny = verdict(_stats(seeds=1, subjects=1), titles=TITLES, controls=["random"])
    assert any("gradcam cannot be tested against random" in s and "no variance" in s
               for s in tiny)


def test_a_design_too_small_for_any_difference_says_so():
    st = _stats(seeds=2, subjects=2, sd_seed=30.0, sd_res=20.0, rng=3)
    assert min(c.mde for c in st.comparisons if c.metric == "dsc" and c.mde) >= 100
    lines = verdict(st, titles=TITLES, controls=["random"])
    assert any("no difference on the 0\u2013100 scale" in s for s in lines)


def test_convergence_set_is_described():
    st = _stats(sets=("val@ada3",))
    assert any("val DSC after the first 3 ADA epochs (val@ada3)" in s for s in verdict(st, titles=TITLES))


def test_unknown_names_are_rejected():
    with pytest.raises(InputError, match=r"unknown control 'rnd'.*'random'"):
        verdict(_stats(), titles=TITLES, controls=["rnd"])
    with pytest.raises(InputError, match=r"unknown metric 'iou'"):
        verdict(_stats(), titles=TITLES, metric="iou")


def test_significant_before_but_not_after_holm_is_not_a_win():
    st = _stats()
    c = max((st.comparison(b, "random", "robustness", "dsc") for b in METHODS),
            key=lambda c: c.diff)
    edited = c.model_copy(update={"diff": 0.9, "p": 0.012, "p_holm": 0.14, "ci": c.ci.model_copy(
        update={"low": 0.2, "high": 1.6})})
    st = st.model_copy(update={"comparisons": tuple(
        edited if x is c else x for x in st.comparisons)})
    lines = verdict(st, titles=TITLES, controls=["random"])
    assert not any(f"{b} beats" in s for s in lines for b in METHODS)
    head = next(s for s in lines if "none of the 3" in s)
    assert (f"largest: {c.branch} +0.9 points, 95% CI +0.2 to +1.6, Holm p = 0.14; "
            f"p = 0.012 before Holm's correction over {c.holm_family} comparisons") in head


def test_the_headline_names_what_survives_holm_or_the_closest_comparison():
    from ada_core.verdict import headline

    null = _stats()
    line = headline(null, titles=TITLES)
    cs = [c for c in null.comparisons if c.metric == "dsc" and c.branch in METHODS]
    assert line.startswith(f"Over 4 seeds \u00d7 16 subjects, {len(cs)} paired DSC comparisons of 3 ")
    assert "none differs beyond chance after Holm's correction" in line
    top = min(cs, key=lambda c: c.p)
    assert f"closest: {top.branch} against {top.control}" in line
    planted = _stats(effect={"gradcam": 4.0})
    line = headline(planted, titles=TITLES)
    wins = [c for c in planted.comparisons if c.metric == "dsc" and c.significant]
    assert wins and all(c.branch == "gradcam" for c in wins)
    assert f"{len(wins)} survive" in line and "gradcam beats random erasing (random) on robustness DSC" in line
    d = 2 if wins[0].ci.high - wins[0].ci.low < 1 else 1
    first = min(wins, key=lambda c: c.p_holm)
    assert f"{first.diff:+.{d}f}".replace("-", "\u2212") in line
