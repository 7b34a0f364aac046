"""``study_statistics``: every estimate, the three comparison families and the omnibus test.

- **primary**: each method against the primary control(s) on the primary set and metric, Holm
  over those tests only, at ``alpha``: the question the study was run to answer;
- **pairs**: every method against every other method on the primary set and metric (the
  paper's question: do the methods differ from each other?), Holm within;
- **secondary**: every other method-control comparison (other sets, metrics, controls), its
  own Holm family, exploratory;
- **omnibus**: one F test of the method effect on the primary set and metric.

Persons are the unit: a person's scans (sessions, raters) are averaged first
(:func:`~ada_core.stats._table.person_means`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from ada_core.errors import DataError, InputError, suggest
from ada_core.stats import _core
from ada_core.stats._compare import Matrix, compare, estimate
from ada_core.stats._models import (
    Comparison,
    Estimate,
    Omnibus,
    PrimaryEndpoint,
    StudyStatistics,
)
from ada_core.stats._omnibus import method_effect
from ada_core.stats._table import HIGHER_IS_BETTER, PersonMeans, Table, person_means

__all__ = ["study_statistics"]


def _matrix(pm: PersonMeans, branch: str, source: str) -> Matrix:
    rows = pm.branch == branch
    if not rows.any():
        have = sorted(set(pm.branch.tolist()))
        raise DataError(f"{source}: branch {branch!r} has no rows on set {pm.set!r}. Branches "
                        f"on that set: {have}")  # fmt: skip
    seeds = tuple(sorted(set(pm.seed[rows].tolist())))
    persons = tuple(sorted(set(zip(pm.fold[rows].tolist(), pm.person[rows].tolist(), strict=True))))
    si = {s: i for i, s in enumerate(seeds)}
    pi = {p: j for j, p in enumerate(persons)}
    y = np.full((len(seeds), len(persons)), np.nan)
    seen = np.zeros(y.shape, dtype=bool)
    for s, f, p, v in zip(pm.seed[rows], pm.fold[rows], pm.person[rows], pm.mean[rows],
                          strict=True):  # fmt: skip
        y[si[s], pi[(f, p)]] = v
        seen[si[s], pi[(f, p)]] = True
    if not seen.all():
        s, j = np.argwhere(~seen)[0]
        raise DataError(
            f"{source}: branch {branch!r} on set {pm.set!r} has no rows for person "
            f"{persons[j][1]!r} (fold {persons[j][0]!r}) in seed {seeds[s]} but has them in "
            f"other seeds ({int((~seen).sum())} seed x person cell(s) missing); every seed "
            f"must evaluate the same persons")  # fmt: skip
    n_subjects = int(pm.n_subjects[rows].sum() // max(1, len(seeds)))
    return Matrix(seeds, persons, y, n_subjects, int(pm.n_slices[rows].sum()),
                  int(pm.n_undefined[rows].sum()))


def _known(kind: str, names: Sequence[str], valid: Sequence[str], source: str) -> None:
    for name in names:
        if name not in valid:
            raise InputError(f"{source}: unknown {kind} {name!r}. " + suggest(name, valid))


def _finish(raw: list[dict], family: str, alpha: float, power: float,
            resolve: Mapping[str, float]) -> list[Comparison]:  # fmt: skip
    """Holm within the family, then the MDE and what resolving ``resolve`` would take, both at
    Holm's first step of the family (the level a claim needs)."""
    p = np.array([np.nan if r["p"] is None else r["p"] for r in raw])
    adj = _core.holm(p) if raw else p
    size = int((~np.isnan(p)).sum())
    step = alpha / max(size, 1)
    out = []
    for r, a in zip(raw, adj, strict=True):
        d = r.pop("_design")
        res = resolve.get(r["metric"], resolve.get("*", 1.0))
        extra = {"p_holm": None if np.isnan(a) else float(a), "family": family,
                 "family_size": size, "alpha": alpha, "mde": None, "mde_alpha": None,
                 "resolve": res, "seeds_needed": None, "persons_needed": None,
                 "needed_note": "", "mde_seeds_limit": None}  # fmt: skip
        if r["p"] is not None and d is not None:
            extra.update(mde=_core.mde(r["se"], r["df"], step, power), mde_alpha=step)
            seeds, persons, limit = _core.needed(d, res, step, power)
            extra.update(seeds_needed=seeds, persons_needed=persons,
                         mde_seeds_limit=None if not np.isfinite(limit) else limit)
            if seeds is None:
                extra["needed_note"] = (
                    f"seeds alone cannot resolve {res:g}: with these {r['n_persons']} persons "
                    f"the person term alone allows {limit:.2g}" if np.isfinite(limit) and
                    limit > res else f"more than 10000 seeds would be needed for {res:g}")  # fmt: skip
        elif r["n_seeds"] == 1:
            extra["needed_note"] = ("seed-to-seed variation is unknown with 1 seed: run at "
                                    "least 2 (better 3 or more) to project what would resolve it")
        out.append(Comparison(**r, **extra))
    return out


def _omnibus(mats: dict[str, Matrix], methods: Sequence[str], primary: PrimaryEndpoint,
             alpha: float) -> Omnibus | None:  # fmt: skip
    if len(methods) < 2:
        return None
    ms = [mats[m] for m in methods]
    y = np.stack([m.y for m in ms])  # (M, S, N)
    keep = ~np.isnan(y).any(axis=(0, 1))
    y, fold = y[:, :, keep], ms[0].fold_codes(keep)
    common = {"set": primary.set, "metric": primary.metric, "methods": tuple(methods),
              "alpha": alpha, "n_seeds": y.shape[1], "n_persons": int(keep.sum()),
              "n_folds": max(1, len(set(fold.tolist())))}  # fmt: skip
    if y.shape[1] == 1 or keep.sum() == 0 or (y.shape[2] == 1 and common["n_folds"] == 1):
        why = ("1 seed: method differences cannot be told from one training run's luck"
               if y.shape[1] == 1 else "one person: the test would be about that person only")
        return Omnibus(**common, test="", f=None, df1=None, df2=None, p=None, note=why)
    hib = HIGHER_IS_BETTER.get(primary.metric, True)
    r = method_effect((1.0 if hib else -1.0) * y, fold)
    f = float(r.f[0])
    return Omnibus(**common, test=r.kind, f=f if np.isfinite(f) else None,
                   df1=float(r.df1[0]), df2=float(r.df2[0]),
                   p=float(r.p[0]) if np.isfinite(r.p[0]) else None)  # fmt: skip


def _checked(table: Table, branches, controls, sets, metrics, primary, level, alpha, power,
             n_boot, seeds) -> Table:  # fmt: skip
    """``table`` restricted to ``seeds`` after every argument of study_statistics is checked."""
    src = table.source
    if not branches:
        raise InputError("study_statistics needs at least one branch")
    if not 0 < level < 1 or not 0 < alpha < 1 or not 0 < power < 1 or n_boot < 1:
        raise InputError(f"need 0 < level, alpha, power < 1 and n_boot >= 1; got level={level}"
                         f", alpha={alpha}, power={power}, n_boot={n_boot}")  # fmt: skip
    if len(set(seeds or ())) != len(seeds or ()):
        raise InputError(f"seeds lists a seed twice: {list(seeds)}")
    if seeds is not None:
        _known("seed", [str(s) for s in seeds], [str(s) for s in table.values("seed")], src)
        table = table.subset(np.isin(table["seed"], list(seeds)))
    _known("branch", branches, table.values("branch"), src)
    _known("control", controls, table.values("branch"), src)
    _known("set", sets, table.values("set"), src)
    _known("metric", metrics, table.metrics, src)
    for m in metrics:
        if m not in HIGHER_IS_BETTER:
            raise InputError(f"metric {m!r}: orientation unknown; add it to ada_core.quantities")
    if primary is not None:
        _known("primary set", [primary.set], sets, src)
        _known("primary metric", [primary.metric], metrics, src)
        _known("primary control", primary.controls, controls, src)
    return table


def study_statistics(
    table: Table, *, branches: Sequence[str], controls: Sequence[str] = (),
    sets: Sequence[str] = ("val",), metrics: Sequence[str] = ("dsc",),
    primary: PrimaryEndpoint | None = None, pairs: bool = True, n_boot: int = 2000,
    seed: int = 0, level: float = 0.95, resolve: float | Mapping[str, float] = 1.0,
    alpha: float = 0.05, power: float = 0.8, seeds: Sequence[int] | None = None,
    changes: Sequence[str] = (),
) -> StudyStatistics:
    """Estimates of every branch and control, and the comparison families.

    Args:
        table: the results table (:func:`read_table`).
        branches: the methods (each compared against each control, and with each other).
        controls: control labels (``random``, ``none``, ...).
        sets, metrics: what is estimated and compared (secondary family).
        primary: the declared endpoint (its set and metric must be among ``sets`` and
            ``metrics``, its controls among ``controls``); None: every comparison is secondary.
        pairs: compare the methods with each other on the primary endpoint.
        n_boot: bootstrap replicates; seed: seed of the bootstrap streams.
        level: confidence level; alpha: family-wise level of each family; power: of the MDE.
        resolve: the difference (metric units, or a mapping metric -> difference, ``"*"`` for
            the rest) for which the seeds and persons needed are computed.
        seeds: restrict the table to these seeds (default: all).
        changes: sets whose values are changes against a reference (``robustness_near``): the
            metric's bounds do not apply to their intervals.

    Raises:
        InputError: unknown names or bad settings.
        DataError: a branch missing for some seed, persons not crossed with seeds, no rows.
    """
    src = table.source
    table = _checked(table, branches, controls, sets, metrics, primary, level, alpha, power,
                     n_boot, seeds)  # fmt: skip
    res = resolve if isinstance(resolve, Mapping) else {"*": float(resolve)}
    labels = list(dict.fromkeys([*branches, *controls]))
    estimates: list[Estimate] = []
    raw: dict[str, list[dict]] = {"primary": [], "pairs": [], "secondary": []}
    omnibus = None
    for set_ in sets:
        by_metric = person_means(table, set_, metrics)
        for metric in metrics:
            mats = {b: _matrix(by_metric[metric], b, src) for b in labels}
            hib = HIGHER_IS_BETTER[metric]
            kw = {"hib": hib, "level": level, "n_boot": n_boot, "seed": seed, "source": src}
            for b in labels:
                estimates.append(Estimate(**estimate(mats[b], b, set_, metric, level=level,
                                                     n_boot=n_boot, seed=seed,
                                                     change=set_ in changes)))  # fmt: skip
            is_primary = primary is not None and (set_, metric) == (primary.set, primary.metric)
            for b in branches:
                for c in controls:
                    if b != c:
                        family = "primary" if is_primary and c in primary.controls else "secondary"
                        raw[family].append(compare(mats[b], mats[c], b, c, set_, metric, **kw))
            if is_primary and pairs:
                for b, c in combinations(branches, 2):
                    raw["pairs"].append(compare(mats[b], mats[c], b, c, set_, metric, **kw))
            if is_primary:
                omnibus = _omnibus(mats, branches, primary, alpha)
    comparisons = [c for fam in ("primary", "pairs", "secondary")
                   for c in _finish(raw[fam], fam, alpha, power, res)]  # fmt: skip
    used = tuple(sorted({int(s) for s in table["seed"]}))
    notes = []
    if len(used) == 1:
        notes.append(f"1 seed ({used[0]}): every interval leaves out seed-to-seed variation "
                     f"and no difference is claimed")  # fmt: skip
    return StudyStatistics(branches=tuple(branches), controls=tuple(controls), sets=tuple(sets),
                           metrics=tuple(metrics), seeds=used, primary=primary, level=level,
                           alpha=alpha, power=power, n_boot=n_boot, seed=seed,
                           estimates=tuple(estimates), comparisons=tuple(comparisons),
                           omnibus=omnibus, notes=tuple(notes))  # fmt: skip
