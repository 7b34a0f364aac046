"""The verdict: plain sentences generated from a study's statistics, and only from them.

Its **opening** answers, in at most three sentences, (1) the primary question (each method
against the primary control on the primary set, Holm over the methods), (2) whether the methods
differ from each other at all (the omnibus test), and (3) what it would take to resolve the
smallest difference of interest (seeds and persons, at the level a claim needs). **Caveats**
follow (one seed, missing branches, a planted-effect study, failing persons), then the
exploratory **details** per set.

A method "beats" (or "is worse than") another only when its Holm-corrected p in its family is
below the family's level, which needs at least two seeds and two persons: with one seed the
verdict describes and never claims. Every number quoted comes with its n and its interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from ada_core.quantities import METRICS
from ada_core.stats import Comparison, Omnibus, StudyStatistics

__all__ = ["SetFindings", "Verdict", "set_words", "verdict"]

MINUS = "\u2212"
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class SetFindings(BaseModel):
    """The exploratory sentences of one evaluation set."""

    model_config = _FROZEN

    set: str
    sentences: list[str]


class Verdict(BaseModel):
    """What a study's numbers support, in sentences (see the module docstring)."""

    model_config = _FROZEN

    opening: list[str]
    caveats: list[str] = []
    details: list[SetFindings] = []

    def sentences(self) -> list[str]:
        """Every sentence, in reading order."""
        return [*self.opening, *self.caveats, *(s for d in self.details for s in d.sentences)]


def _signed(x: float, digits: int) -> str:
    s = f"{x:+.{digits}f}"
    return s.replace("-", MINUS) if float(s) != 0 else f"{0:.{digits}f}"


def _p(p: float) -> str:
    if p < 0.001:
        return "< 0.001"
    return "= " + (f"{p:.2f}" if p >= 0.1 else f"{p:.2g}")


def _unit(metric: str, amount: float | None = None) -> str:
    unit = METRICS[metric].diff_unit if metric in METRICS else ""
    return unit[:-1] if amount == 1 and unit.endswith("s") else unit


def _label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric.upper()


def set_words(name: str) -> str:
    """How a sentence names an evaluation set."""
    words = {"test": "the held-out test persons", "val": "the validation persons (which "
             "selected the checkpoints)", "robustness": "the robustness set (Algorithm 2)",
             "robustness_near": "the squares near the grey matter (change against no "
             "occlusion)", "context": "the context probe"}  # fmt: skip
    if "@ada" in name:
        base, k = name.split("@ada")
        return f"{base} after the first {k} ADA epochs"
    return words.get(name, f"the {name} set")


def _title(name: str, titles: Mapping[str, str]) -> str:
    title = titles.get(name, "")
    return f"{title} ({name})" if title and title != name else name


def _size(cs: Sequence[Comparison | Omnibus]) -> str:
    s = sorted({c.n_seeds for c in cs})
    n = sorted({c.n_persons for c in cs})
    f = sorted({c.n_folds for c in cs})
    span = (lambda v: str(v[0]) if len(v) == 1 else f"{v[0]}\u2013{v[-1]}")  # noqa: E731
    out = f"{span(s)} seed{'s' if s[-1] != 1 else ''} \u00d7 {span(n)} person{'s' if n[-1] != 1 else ''}"
    return out + (f" in {span(f)} folds" if f[-1] > 1 else "")


def _numbers(c: Comparison, *, holm: bool = True) -> str:
    width = c.ci.high - c.ci.low if c.ci else abs(c.diff or 0)
    d = 2 if width < 1 else 1
    u = f" {_unit(c.metric)}" if _unit(c.metric) else ""
    out = f"{_signed(c.diff, d)}{u}"
    if c.ci is not None:
        out += f", {c.ci.level:.0%} CI {_signed(c.ci.low, d)} to {_signed(c.ci.high, d)}"
    if holm and c.p_holm is not None:
        out += f", Holm p {_p(c.p_holm)}"
    return out


def _clauses(cs: list[Comparison], other: str, titles: Mapping[str, str]) -> list[str]:
    """'gradcam beats random erasing (random) by ...' or the closest miss."""
    name = _title(other, titles)
    sig = sorted((c for c in cs if c.significant), key=lambda c: c.p_holm)
    out = [f"{c.branch} {'beats' if c.diff > 0 else 'is worse than'} {name} by "
           f"{_numbers(c)}" for c in sig[:3]]  # fmt: skip
    if len(sig) > 3:
        out.append(f"and {len(sig) - 3} more")
    rest = [c for c in cs if not c.significant]
    if rest and not sig:
        top = min(rest, key=lambda c: c.p if c.p is not None else 2.0)
        if len(cs) > 1:
            out.append(f"no method differs from {name} beyond chance (closest: {top.branch} "
                       f"{_numbers(top)})")
        else:  # one method: say it does not differ (never 'gradcam differs ... (closest...)')
            out.append(f"{top.branch} does not differ from {name} beyond chance "
                       f"({_numbers(top)})")
    elif rest:
        out.append(f"the other {len(rest)} do{'es' if len(rest) == 1 else ''} not differ from "
                   f"{name} beyond chance")
    return out


def _primary(stats: StudyStatistics, titles: Mapping[str, str], planted: Sequence[str]) -> str:
    p = stats.primary
    cs = stats.family("primary")
    what = f"{_label(p.metric)} on {set_words(p.set)}"
    lead = "Positive control (a planted effect): " if any(c.branch in planted for c in cs) else ""
    tested = [c for c in cs if c.p is not None]
    if not tested:
        best = max((c for c in cs if c.diff is not None), key=lambda c: c.diff, default=None)
        if best is None:
            return f"{lead}The primary comparison ({what}) could not be computed: {cs[0].note}."
        return (f"{lead}With {_size(cs)} the study describes and does not decide: on {what}, "
                f"the largest difference from {_title(best.control, titles)} is {best.branch} "
                f"{_numbers(best, holm=False)} ({best.note}).")
    parts = []
    for control in p.controls:
        mine = [c for c in tested if c.control == control]
        if mine:
            parts += _clauses(mine, control, titles)
    k = len({c.branch for c in tested})
    return (f"{lead}Primary question, {what} ({_size(tested)}; Holm over {k} method"
            f"{'s' if k != 1 else ''} \u00d7 {len(p.controls)} control"
            f"{'s' if len(p.controls) != 1 else ''} at \u03b1 = {stats.alpha:g}): "
            + "; ".join(parts) + ".")


def _omnibus(stats: StudyStatistics) -> str | None:
    o = stats.omnibus
    if o is None:
        return None
    what = f"{_label(o.metric)} on {set_words(o.set)}"
    k = len(o.methods)
    if o.p is None:
        return f"Whether the {k} methods differ from each other cannot be tested: {o.note}."
    stat = f"{o.test} F = {o.f:.2f} on {o.df1:.1f} and {o.df2:.1f} df, p {_p(o.p)}"
    if not o.significant:
        return f"The {k} methods do not differ from each other beyond chance on {what} ({stat})."
    pairs = sorted((c for c in stats.family("pairs") if c.significant), key=lambda c: c.p_holm)
    shown = "; ".join(f"{c.branch} {'beats' if c.diff > 0 else 'trails'} {c.control} by "
                      f"{_numbers(c)}" for c in pairs[:3])  # fmt: skip
    tail = f": {shown}" if shown else "; no single pair survives Holm's correction"
    return f"The {k} methods differ from each other on {what} ({stat}){tail}."


def _resolution(stats: StudyStatistics) -> str:
    cs = [c for c in stats.family("primary") if c.mde is not None]
    if not cs:
        return ("With 1 seed the seed-to-seed variation is unknown, so neither the smallest "
                "detectable difference nor the seeds needed can be stated; run at least 2 seeds "
                "(better 3 or more).") if len(stats.seeds) == 1 else (
                "The primary comparison has no variance estimate, so nothing can be projected.")
    c0 = cs[0]
    u = f" {_unit(c0.metric)}" if _unit(c0.metric) else ""
    lo, hi = min(c.mde for c in cs), max(c.mde for c in cs)
    d = 2 if hi < 1 else 1
    span = f"{lo:.{d}f}" if f"{lo:.{d}f}" == f"{hi:.{d}f}" else f"{lo:.{d}f}\u2013{hi:.{d}f}"
    level = f"\u03b1 = {stats.alpha:g}/{c0.family_size} = {c0.mde_alpha:.2g}, {stats.power:.0%} power"
    head = f"At Holm's first step ({level}) this study detects differences of {span}{u}"
    res = c0.resolve
    u = f" {_unit(c0.metric, res)}" if _unit(c0.metric) else ""
    if hi <= res:
        return head + f", which resolves the {res:g}{u} of interest."
    seeds = [c.seeds_needed for c in cs]
    persons = [c.persons_needed for c in cs]
    n, s = c0.n_persons, c0.n_seeds
    if all(v is not None for v in seeds):
        way = f"about {max(seeds)} seeds with these {n} persons would resolve {res:g}{u}"
    else:
        worst = max((c for c in cs if c.seeds_needed is None), key=lambda c: c.mde_seeds_limit or 0)
        way = (f"seeds alone cannot resolve {res:g}{u} (with these {n} persons the person term "
               f"alone allows {worst.mde_seeds_limit:.{d}f} {_unit(c0.metric)})"
               if worst.mde_seeds_limit
               else f"more than 10000 seeds would be needed for {res:g}{u}")  # fmt: skip
    if all(v is not None for v in persons):
        way += f"; about {max(persons)} persons with these {s} seeds would"
    elif c0.design == "folds":
        way += "; more folds (sites) or persons per fold would"
    return f"{head}; {way}."


def _details(stats: StudyStatistics, titles: Mapping[str, str]) -> list[SetFindings]:
    out = []
    sec = stats.family("secondary")
    size = len([c for c in sec if c.p is not None])
    for set_ in stats.sets:
        sentences = []
        for metric in stats.metrics:
            key = stats.primary.metric if stats.primary is not None else stats.metrics[0]
            mine = [c for c in sec if (c.set, c.metric) == (set_, metric)]
            if metric != key and not any(c.significant for c in mine):
                continue  # a further metric is spelled out only where it finds something
            for control in stats.controls:
                cs = [c for c in mine if c.control == control]
                tested = [c for c in cs if c.p is not None]
                if tested:
                    body = "; ".join(_clauses(tested, control, titles))
                    sentences.append(f"{_label(metric)} on {set_words(set_)} ({_size(tested)}; "
                                     f"exploratory, Holm over {size} secondary comparisons): "
                                     f"{body}.")  # fmt: skip
                elif cs and any(c.diff for c in cs):
                    best = max((c for c in cs if c.diff is not None), key=lambda c: c.diff)
                    sentences.append(f"{_label(metric)} on {set_words(set_)} ({_size(cs)}, "
                                     f"described only): largest difference from "
                                     f"{_title(control, titles)}: {best.branch} "
                                     f"{_numbers(best, holm=False)}.")  # fmt: skip
        if sentences:
            out.append(SetFindings(set=set_, sentences=sentences))
    return out


def verdict(stats: StudyStatistics, *, titles: Mapping[str, str] | None = None,
            missing: Sequence[str] = (), planted: Sequence[str] = (),
            notes: Sequence[str] = (), no_primary: str = "") -> Verdict:  # fmt: skip
    """The verdict of a study's statistics (see the module docstring).

    Args:
        stats: the study's statistics.
        titles: how sentences name each branch (``{"random": "random erasing"}``).
        missing: branches that are missing or failed; named as not compared.
        planted: branches that know the answer (a planted-effect control).
        notes: further caveats computed elsewhere (failing persons, for example).
        no_primary: why the study has no primary endpoint, when ``stats.primary`` is None.
    """
    titles = titles or {}
    if stats.primary is None:
        opening = [f"No primary comparison: {no_primary or 'the study declares none'}."]
    else:
        opening = [_primary(stats, titles, planted)]
        omni = _omnibus(stats)
        if omni:
            opening.append(omni)
        opening.append(_resolution(stats))
    caveats = []
    if planted:
        caveats.append(f"This is a planted-effect study (a positive control): {', '.join(planted)} "
                       f"know{'s' if len(planted) == 1 else ''} where the shortcut is and "
                       f"{'is' if len(planted) == 1 else 'are'} not an interpretability method; "
                       "the study shows whether the whole chain finds an effect that is there.")
    if len(stats.seeds) == 1:
        caveats.append(f"Only 1 seed ({stats.seeds[0]}): every interval leaves out seed-to-seed "
                       "variation, so no difference is claimed; a second seed measures it.")
    elif len(stats.seeds) == 2:
        caveats.append(f"Only 2 seeds ({stats.seeds[0]}, {stats.seeds[1]}): the seed-to-seed "
                       "variance rests on 1 degree of freedom, so intervals are wide.")
    if stats.primary is not None and not METRICS.get(stats.primary.metric, METRICS["dsc"]).higher_is_better:
        m = _label(stats.primary.metric)
        caveats.append(f"{m} is lower-is-better: each difference is other \u2212 method, so "
                       f"positive means the method has the lower (better) {m}.")
    if missing:
        caveats.append(f"Not compared (missing or failed): {', '.join(missing)}.")
    caveats += list(notes)
    return Verdict(opening=opening, caveats=caveats, details=_details(stats, titles))
