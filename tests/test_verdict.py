"""ada_core.verdict: sentences follow the numbers, quote them exactly, and claim only what the
family-wise test supports."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_stats import make_table

from ada_core.stats import PrimaryEndpoint, Table, study_statistics
from ada_core.verdict import verdict

METHODS = ["vanilla", "gradcam", "guided_backprop"]
#: How the study names the controls (the engine passes its branches' titles).
TITLES = {"random": "random erasing", "none": "longer training without ADA"}
NUM = r"([+\u2212]?\d+\.\d+)"


def _stats(effect=None, seeds=4, persons=16, sets=("test", "robustness"), metric="dsc",
           controls=("random",), **kw):
    cols = make_table(np.random.default_rng(kw.pop("rng", 0)), seeds=seeds, subjects=persons,
                      slices=2, sets=sets, branches=(*METHODS, "random", "none"),
                      effect=effect, sd_seed=kw.pop("sd_seed", 0.3), **kw)
    return study_statistics(Table(cols), branches=METHODS, controls=["random", "none"],
                            sets=list(sets), metrics=["dsc", "hsd"], n_boot=100,
                            primary=PrimaryEndpoint(set=sets[0], metric=metric,
                                                    controls=tuple(controls)))


def _num(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def _digits(c) -> int:
    return 2 if c.ci.high - c.ci.low < 1 else 1


def test_no_effect_says_no_method_differs_and_quotes_the_closest():
    st = _stats()
    v = verdict(st, titles=TITLES)
    assert 2 <= len(v.opening) <= 3
    head = v.opening[0]
    assert head.startswith("Primary question, DSC on the held-out test persons (4 seeds \u00d7 16 "
                           "persons; Holm over 3 methods \u00d7 1 control at \u03b1 = 0.05)")
    m = re.search(rf"no method differs from random erasing \(random\) beyond chance \(closest: "
                  rf"(\w+) {NUM} points, 95% CI {NUM} to {NUM}, Holm p = ([\d.]+)\)", head)
    assert m, head
    prim = st.family("primary")
    top = min(prim, key=lambda c: c.p)
    d = _digits(top)
    assert m[1] == top.branch and _num(m[2]) == round(top.diff, d)
    assert (_num(m[3]), _num(m[4])) == (round(top.ci.low, d), round(top.ci.high, d))
    assert float(m[5]) == pytest.approx(top.p_holm, abs=0.006)
    assert not any("beats" in s for s in v.sentences())


def test_planted_effect_is_claimed_with_its_numbers():
    st = _stats(effect={"gradcam": 6.0})
    c = st.comparison("gradcam", "random", "test", "dsc")
    assert c.significant
    head = verdict(st, titles=TITLES).opening[0]
    m = re.search(rf"gradcam beats random erasing \(random\) by {NUM} points, 95% CI {NUM} to "
                  rf"{NUM}, Holm p ([<=] [\d.]+)", head)
    assert m, head
    assert _num(m[1]) == round(c.diff, _digits(c))
    assert "the other 2 do not differ from random erasing (random) beyond chance" in head


def test_worse_method_is_called_worse():
    head = verdict(_stats(effect={"vanilla": -6.0}), titles=TITLES).opening[0]
    assert "vanilla is worse than random erasing (random) by \u2212" in head


def test_significant_before_but_not_after_holm_is_not_a_claim():
    st = _stats()
    fake = [c.model_copy(update={"p": 0.01, "p_holm": 0.06 if c.family == "primary" else 1.0})
            for c in st.comparisons]
    v = verdict(st.model_copy(update={"comparisons": tuple(fake)}), titles=TITLES)
    assert "beats" not in " ".join(v.sentences())
    assert "no method differs" in v.opening[0]


def test_single_seed_describes_and_never_claims():
    st = _stats(effect={"gradcam": 20.0}, seeds=1)
    v = verdict(st, titles=TITLES)
    text = " ".join(v.sentences())
    assert "beats" not in text and "survive" not in text
    assert "describes and does not decide" in v.opening[0]
    assert any(s.startswith("Only 1 seed (0)") for s in v.caveats)
    assert "run at least 2 seeds (better 3 or more)" in v.opening[-1]


def test_two_seeds_are_a_caveat():
    assert any(s.startswith("Only 2 seeds") for s in verdict(_stats(seeds=2)).caveats)


def test_omnibus_sentence_quotes_the_f_test():
    st = _stats(effect={"gradcam": 6.0})
    o = st.omnibus
    sentence = verdict(st, titles=TITLES).opening[1]
    assert o.significant
    assert (f"The 3 methods differ from each other on DSC on the held-out test persons "
            f"(quasi-F F = {o.f:.2f} on {o.df1:.1f} and {o.df2:.1f} df") in sentence
    pairs = [c for c in st.family("pairs") if c.significant]
    assert pairs and all(f"{c.branch} " in sentence for c in pairs[:1])
    calm = verdict(_stats()).opening[1]
    assert calm.startswith("The 3 methods do not differ from each other beyond chance")


def test_resolution_sentence_is_at_holms_first_step():
    st = _stats()
    sentence = verdict(st).opening[2]
    prim = st.family("primary")
    m = re.search(r"At Holm's first step \(\u03b1 = 0.05/3 = 0.017, 80% power\) this study "
                  r"detects differences of ([\d.]+)(?:\u2013([\d.]+))? points", sentence)
    assert m, sentence
    lo, hi = min(c.mde for c in prim), max(c.mde for c in prim)
    assert float(m[1]) == pytest.approx(lo, abs=0.051)
    assert float(m[2] or m[1]) == pytest.approx(hi, abs=0.051)
    if hi > 1.0:
        need = max(c.seeds_needed for c in prim)
        assert f"about {need} seeds with these 16 persons would resolve 1 point" in sentence
        persons = [c.persons_needed for c in prim]
        assert (f"about {max(persons)} persons with these 4 seeds" in sentence
                if None not in persons else "persons with these" not in sentence)


def test_lower_is_better_primary_states_the_orientation():
    v = verdict(_stats(metric="hsd"))
    assert any("HSD is lower-is-better" in s for s in v.caveats)


def test_missing_planted_and_extra_notes_are_caveats():
    v = verdict(_stats(), missing=["guided_gradcam (failed)"], planted=["gradcam"],
                notes=["1 person fails in every branch."])
    assert v.opening[0].startswith("Positive control (a planted effect): ")
    assert any("planted-effect study" in s and "gradcam knows" in s for s in v.caveats)
    assert "Not compared (missing or failed): guided_gradcam (failed)." in v.caveats
    assert v.caveats[-1] == "1 person fails in every branch."


def test_no_primary_says_why():
    st = _stats().model_copy(update={"primary": None})
    v = verdict(st, no_primary="the study has no control")
    assert v.opening == ["No primary comparison: the study has no control."]


def test_secondary_findings_are_labelled_exploratory_and_stay_out_of_the_opening():
    st = _stats(effect={"gradcam": 6.0})
    v = verdict(st, titles=TITLES)
    assert all("exploratory" not in s for s in v.opening)
    rob = next(d for d in v.details if d.set == "robustness")
    assert all("exploratory, Holm over" in s for s in rob.sentences if "beats" in s)
    assert any("gradcam beats" in s for s in rob.sentences)
    n = len([c for c in st.family("secondary") if c.p is not None])
    assert f"Holm over {n} secondary comparisons" in rob.sentences[0]


def test_one_method_without_an_effect_does_not_differ():
    # with a single method the sentence names it; it must say it does NOT differ (a Holm p of
    # 0.9 once read "gradcam differs from random erasing beyond chance (closest: ...)")
    cols = make_table(np.random.default_rng(3), seeds=4, subjects=16, slices=2, sets=("test",),
                      branches=("gradcam", "random", "none"), effect=None, sd_seed=0.3)
    st = study_statistics(Table(cols), branches=["gradcam"], controls=["random", "none"],
                          sets=["test"], metrics=["dsc"], n_boot=100,
                          primary=PrimaryEndpoint(set="test", metric="dsc", controls=("random",)))
    [c] = st.family("primary")
    assert not c.significant
    head = verdict(st, titles=TITLES).opening[0]
    m = re.search(rf"gradcam does not differ from random erasing \(random\) beyond chance "
                  rf"\({NUM} points, 95% CI {NUM} to {NUM}, Holm p = ([\d.]+)\)", head)
    assert m, head
    d = _digits(c)
    assert _num(m[1]) == round(c.diff, d) and float(m[4]) == pytest.approx(c.p_holm, abs=0.006)
    assert "gradcam differs" not in head
