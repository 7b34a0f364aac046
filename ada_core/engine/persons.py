"""Every person in sight: per-person scores on the report set, and persons that fail everywhere.

On real multi-site data one unseen site can score a few DSC points in every branch while the
others score 50-65; it makes most of every interval's width, and a table of means hides it.
:func:`person_scores` gives each person x branch its mean over seeds (with the seeds' spread),
and :func:`failing` names the persons that are far below the rest in *every* branch:

    a person fails when, in every branch, its DSC is below ``FLOOR`` (20 points) or below half
    the median of the other persons' DSC in that branch.

A method cannot fix such a person, so it is a caveat of the study (a site unlike the training
sites, a preprocessing mismatch), stated by name in the verdict.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ada_core.quantities import FAILING_FLOOR
from ada_core.runfolder import PersonScore
from ada_core.stats import Table, person_means

__all__ = ["FLOOR", "failing", "person_scores"]

FLOOR = FAILING_FLOOR


def person_scores(table: Table, set_: str, metric: str = "dsc") -> list[PersonScore]:
    """Each (fold, person, branch) on ``set_``: the mean and SD over seeds of the person mean."""
    if set_ not in set(table.values("set")):
        return []
    pm = person_means(table, set_, [metric])[metric]
    groups: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for f, p, s, b, v in zip(pm.fold, pm.person, pm.site, pm.branch, pm.mean, strict=True):
        groups[(str(f), str(p), str(s), str(b))].append(float(v))
    out = []
    for (f, p, s, b), vals in sorted(groups.items()):
        ok = [v for v in vals if not np.isnan(v)]
        out.append(PersonScore(person=p, site=s, fold=f, branch=b, set=set_, metric=metric,
                               mean=float(np.mean(ok)) if ok else None,
                               sd=float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
                               n_seeds=len(ok)))  # fmt: skip
    return out


def failing(scores: list[PersonScore]) -> tuple[list[PersonScore], list[str]]:
    """The scores with ``failing`` set, and one caveat sentence per failing person."""
    by_branch: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for sc in scores:
        by_branch[sc.branch][(sc.fold, sc.person)] = np.nan if sc.mean is None else sc.mean
    persons = sorted({(sc.fold, sc.person) for sc in scores})
    if len(persons) < 2 or not by_branch:
        return scores, []
    bad: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for key in persons:
        mine, others = [], []
        for values in by_branch.values():
            rest = [v for k, v in values.items() if k != key and not np.isnan(v)]
            v = values.get(key, np.nan)
            med = float(np.median(rest)) if rest else np.nan
            if np.isnan(v) or not (v < FLOOR or (rest and v < 0.5 * med)):
                break
            mine.append(v)
            others.append(med)
        else:
            bad[key] = (mine, others)
    out = [sc.model_copy(update={"failing": (sc.fold, sc.person) in bad}) for sc in scores]
    notes = []
    site = {(sc.fold, sc.person): sc.site for sc in scores}
    set_ = scores[0].set
    for (fold, person), (mine, others) in sorted(bad.items()):
        where = f" (site {site[(fold, person)]}" + (f", fold {fold})" if fold else ")")
        notes.append(
            f"{person}{where} fails in every branch on the {set_} set: DSC {min(mine):.1f}\u2013"
            f"{max(mine):.1f} against a median of {min(others):.1f}\u2013{max(others):.1f} for the "
            f"other persons; no method changes that, and it widens every interval on this set.")
    return out, notes
