"""Plain sentences that say what a study's statistics support, generated from the numbers.

A method "beats" (or "is worse than") a control only when its Holm-corrected p is below
1 - level, and then its confidence interval excludes 0 too (the interval and the test share
their SE and df). Every number quoted comes with the seeds x subjects it rests on and its
interval; the power sentence says what the study could not have detected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ada_core.errors import InputError, suggest
from ada_core.quantities import METRICS
from ada_core.stats import Comparison, StudyStatistics

__all__ = ["headline", "verdict"]

_UNIT = {name: m.diff_unit for name, m in METRICS.items()}
#: Bounded metrics: a detectable difference above the range is never reachable.
_RANGE = {name: m.high - m.low for name, m in METRICS.items() if m.bounded}
MINUS = "\u2212"


def _signed(x: float, digits: int) -> str:
    s = f"{x:+.{digits}f}"
    return s.replace("-", MINUS) if float(s) != 0 else f"{0:.{digits}f}"


def _digits(c: Comparison) -> int:
    width = c.ci.high - c.ci.low if c.ci else abs(c.diff or 0)
    return 2 if width < 1 else 1


def _p(p: float) -> str:
    if p < 0.001:
        return "< 0.001"
    return "= " + (f"{p:.2f}" if p >= 0.1 else f"{p:.2g}")


def _what(set_: str, metric: str) -> str:
    m = re.fullmatch(r"(.+)@ada(\d+)", set_)
    if m:
        return f"{m[1]} {metric.upper()} after the first {m[2]} ADA epochs ({set_})"
    return f"{set_} {metric.upper()}"


def _size(cs: Sequence[Comparison], run: bool = False) -> str:
    seeds = sorted({c.n_seeds for c in cs})
    subj = sorted({c.n_subjects for c in cs})
    s = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}\u2013{seeds[-1]}"
    n = str(subj[0]) if len(subj) == 1 else f"{subj[0]}\u2013{subj[-1]}"
    run = " (one training run each)" if run and seeds[-1] == 1 else ""
    return (f"{s} seed{'s' if seeds[-1] != 1 else ''} \u00d7 {n} "
            f"subject{'s' if subj[-1] != 1 else ''}{run}")


def _numbers(c: Comparison, unit: str, name: bool = True) -> str:
    d = _digits(c)
    u = f" {unit}" if unit else ""
    who = f"{c.branch} " if name else ""
    return (f"{who}{_signed(c.diff, d)}{u}, {c.ci.level:.0%} CI {_signed(c.ci.low, d)} to "
            f"{_signed(c.ci.high, d)}, Holm p {_p(c.p_holm)}")


def _title(control: str, titles: Mapping[str, str]) -> str:
    """How a sentence names a control: its title and its label (``random erasing (random)``)."""
    title = titles.get(control, "")
    return f"{title} ({control})" if title and title != control else control


def _findings(cs: list[Comparison], control: str, what: str, unit: str,
              titles: Mapping[str, str]) -> list[str]:  # fmt: skip
    name = _title(control, titles)
    size = _size(cs, run=True)
    out = []
    better = [c for c in cs if c.significant and c.diff > 0]
    worse = [c for c in cs if c.significant and c.diff < 0]
    for verb, group in (("beats", sorted(better, key=lambda c: -c.diff)),
                        ("is worse than", sorted(worse, key=lambda c: c.diff))):
        for c in group:
            dz = f"; d_z = {_signed(c.effect_size, 2)}" if c.effect_size is not None else ""
            out.append(f"Over {_size([c], run=True)}, {c.branch} {verb} {name} on {what}: "
                       f"{_numbers(c, unit, name=False)} over {c.holm_family} comparisons{dz}.")
    rest = [c for c in cs if c not in better and c not in worse]
    if rest:
        top = max(rest, key=lambda c: c.diff)
        largest = _numbers(top, unit)
        if top.ci.excludes(0):
            largest += (f"; p {_p(top.p)} before Holm's correction over {top.holm_family} "
                        f"comparisons")
        if better or worse:
            k = len(rest)
            out.append(f"The other {k} method{'s' if k != 1 else ''} show{'' if k != 1 else 's'}"
                       f" no difference from {name} beyond chance on {what} (largest: "
                       f"{largest}).")
        else:
            k = len(rest)
            many = f"none of the {k} interpretability methods" if k > 1 else \
                "the interpretability method"
            verb = "beats or trails" if k > 1 else "neither beats nor trails"
            out.append(f"Over {size}, {many} {verb} {name} on {what} beyond chance "
                       f"(largest: {largest}).")
    return out


def _power(cs: list[Comparison], what: str, unit: str, metric: str, alpha: float,
           power: float) -> list[str]:
    cs = [c for c in cs if c.mde is not None]
    if not cs:
        return []
    u = f" {unit}" if unit else ""
    lo, hi = min(c.mde for c in cs), max(c.mde for c in cs)
    d = 2 if hi < 1 else 1
    span = f"{lo:.{d}f}" if f"{lo:.{d}f}" == f"{hi:.{d}f}" else f"{lo:.{d}f}\u2013{hi:.{d}f}"
    size = _size(cs)
    res = cs[0].resolve
    if metric in _RANGE and lo >= _RANGE[metric]:
        return [(f"At this size ({size}) no difference on the 0\u2013{_RANGE[metric]:.0f} "
                f"scale of {what} can reach significance (detectable only above {span}{u}).")]
    head = (f"Differences below {span}{u} on {what} cannot be detected at this size ({size}; "
            f"\u03b1 = {alpha:g} two-sided before Holm, {power:.0%} power)")
    if any(c.n_seeds == 1 for c in cs):
        return [head + "; with 1 seed the seed-to-seed variation is unknown, so the seeds "
                "needed cannot be projected."]
    blocked = [c for c in cs if c.seeds_needed is None]
    if blocked:
        worst = max(blocked, key=lambda c: c.mde_seeds_limit or 0)
        if (worst.mde_seeds_limit or 0) > res:
            return [head + f"; seeds alone cannot resolve {res:g}{u}: with "
                    f"{worst.n_subjects} subjects the subject term alone allows "
                    f"{worst.mde_seeds_limit:.{d}f}{u} ({worst.branch}), so add subjects."]
        return [head + f"; more than 10000 seeds would be needed to resolve {res:g}{u}."]
    need = max(c.seeds_needed for c in cs)
    if hi <= res:
        return [head + f"; that already resolves {res:g}{u}."]
    return [head + f"; about {need} seeds would resolve {res:g}{u} for every method."]


def verdict(stats: StudyStatistics, *, metric: str = "dsc", sets: Sequence[str] | None = None,
            controls: Sequence[str] | None = None, missing: Sequence[str] = (),
            lead: bool = False, titles: Mapping[str, str] | None = None) -> list[str]:
    """Sentences on whether the interpretability methods beat the controls.

    Args:
        stats: the study's statistics.
        metric: the metric to speak about.
        sets: evaluation sets to cover (default: all of the study's).
        controls: controls to cover (default: all of the study's).
        missing: branches that are missing or failed; they are named as not compared.
        lead: after the caveats, add the :func:`headline` over every comparison.

    Returns:
        One sentence per finding, in order: caveats, then per set and control the findings
        and what the study could not detect.

    Raises:
        InputError: a metric, set or control the statistics do not hold.
    """
    sets = tuple(stats.sets if sets is None else sets)
    controls = tuple(stats.controls if controls is None else controls)
    for kind, names, valid in (("metric", [metric], stats.metrics), ("set", sets, stats.sets),
                               ("control", controls, stats.controls)):
        for n in names:
            if n not in valid:
                raise InputError(f"verdict: unknown {kind} {n!r}. " + suggest(n, valid))
    unit = _UNIT.get(metric, "")
    out: list[str] = []
    hib = {c.higher_is_better for c in stats.comparisons if c.metric == metric}
    if hib == {False}:
        out.append(f"{metric.upper()} is lower-is-better: each difference below is control "
                   f"\u2212 method, so positive means the method has the lower (better) "
                   f"{metric.upper()}.")
    if len(stats.seeds) == 1:
        subj = sorted({c.n_subjects for c in stats.comparisons if c.metric == metric})
        n = f"{subj[0]}" if len(subj) == 1 else f"{subj[0]}\u2013{subj[-1]}" if subj else "0"
        word = "subject" if subj and subj[-1] == 1 else "subjects"
        out.append(f"Only 1 seed ({stats.seeds[0]}): every interval and test below is over the "
                   f"{n} {word} only and leaves out seed-to-seed variation, so a difference "
                   f"may be this one training run's luck rather than the method.")
    elif len(stats.seeds) == 2:
        out.append(f"Only 2 seeds ({stats.seeds[0]}, {stats.seeds[1]}): the seed-to-seed "
                   f"variance rests on 1 degree of freedom, so the intervals are approximate "
                   f"and wide.")
    if missing:
        out.append(f"Not compared (missing or failed): {', '.join(missing)}.")
    if lead:
        out.append(headline(stats, metric=metric, sets=sets, controls=controls, titles=titles))
    for set_ in sets:
        what = _what(set_, metric)
        for control in controls:
            cs = [c for c in stats.comparisons if (c.set, c.control, c.metric) ==
                  (set_, control, metric) and c.branch not in stats.controls]
            for c in cs:
                if c.p is None or c.diff is None:
                    out.append(f"{c.branch} cannot be tested against {control} on {what}: "
                               f"{c.note} ({_size([c])}).")
            ok = [c for c in cs if c.p is not None and c.diff is not None]
            if ok:
                out += _findings(ok, control, what, unit, titles or {})
                out += _power(ok, what, unit, metric, stats.alpha, stats.power)
    return out


def headline(stats: StudyStatistics, *, metric: str = "dsc", sets: Sequence[str] | None = None,
             controls: Sequence[str] | None = None,
             titles: Mapping[str, str] | None = None) -> str:
    """One sentence over every comparison of ``metric``: which, if any, survive Holm's
    correction, else the closest one (smallest p). Generated from the numbers only.

    Raises:
        InputError: a metric, set or control the statistics do not hold.
    """
    sets = tuple(stats.sets if sets is None else sets)
    controls = tuple(stats.controls if controls is None else controls)
    if metric not in stats.metrics:
        raise InputError(f"headline: unknown metric {metric!r}. " + suggest(metric, stats.metrics))
    cs = [c for c in stats.comparisons if c.metric == metric and c.set in sets
          and c.control in controls and c.branch not in stats.controls
          and c.p is not None and c.diff is not None]  # fmt: skip
    if not cs:
        return f"No {metric.upper()} comparison of a method against a control could be tested."
    unit = _UNIT.get(metric, "")
    methods = sorted({c.branch for c in cs})
    titles = titles or {}
    names = ", ".join(_title(k, titles) for k in dict.fromkeys(c.control for c in cs))
    scope = (f"Over {_size(cs)}, {len(cs)} paired {metric.upper()} comparisons of "
             f"{len(methods)} interpretability method{'s' if len(methods) != 1 else ''} against "
             f"{names} on {len({c.set for c in cs})} evaluation sets")
    sig = sorted((c for c in cs if c.significant), key=lambda c: c.p_holm)
    if not sig:
        top = min(cs, key=lambda c: c.p)
        return (f"{scope}: none differs beyond chance after Holm's correction (closest: "
                f"{top.branch} against {top.control} on {_what(top.set, metric)}, "
                f"{_numbers(top, unit, name=False)}).")
    shown = "; ".join(
        f"{c.branch} {'beats' if c.diff > 0 else 'is worse than'} {_title(c.control, titles)} "
        f"on {_what(c.set, metric)} ({_numbers(c, unit, name=False)})"
        for c in sig[:3]
    )
    more = f"; and {len(sig) - 3} more" if len(sig) > 3 else ""
    return f"{scope}: {len(sig)} survive{'s' if len(sig) == 1 else ''} Holm's correction: {shown}{more}."
