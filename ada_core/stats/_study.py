"""``study_statistics``: every branch's estimate and every branch-vs-control comparison."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ada_core.errors import DataError, InputError, suggest
from ada_core.stats import _core
from ada_core.stats._models import Comparison, Estimate, Interval, StudyStatistics
from ada_core.stats._table import HIGHER_IS_BETTER, SubjectMeans, Table, subject_means_many

__all__ = ["study_statistics"]

SEEDS_AND_SUBJECTS = "seeds and subjects"
SUBJECTS_ONLY = "subjects only (1 seed)"
TEST = "crossed random-effects t test (seeds x subjects, Satterthwaite df)"
TEST_ONE_SEED = "one-sample t test over subjects (1 seed)"
EFFECT = "Cohen's d_z (mean / SD of the seed-averaged subject differences)"


@dataclass(frozen=True)
class _Matrix:
    """One branch's subject means as seeds x subjects, subjects undefined anywhere dropped."""

    seeds: tuple[int, ...]
    subjects: tuple[tuple[str, str], ...]
    y: np.ndarray  # (S, N) with NaN where undefined
    n_slices: int
    n_undefined: int


def _matrix(sm: SubjectMeans, branch: str, source: str) -> _Matrix:
    rows = sm.branch == branch
    if not rows.any():
        have = sorted(set(sm.branch.tolist()))
        raise DataError(f"{source}: branch {branch!r} has no rows on set {sm.set!r}. Branches "
                        f"on that set: {have}")
    seeds = tuple(sorted(set(sm.seed[rows].tolist())))
    subjects = tuple(sorted(set(zip(sm.fold[rows].tolist(), sm.subject[rows].tolist(),
                                    strict=True))))
    si = {s: i for i, s in enumerate(seeds)}
    ji = {s: j for j, s in enumerate(subjects)}
    y = np.full((len(seeds), len(subjects)), np.nan)
    seen = np.zeros(y.shape, dtype=bool)
    for s, f, j, m in zip(sm.seed[rows], sm.fold[rows], sm.subject[rows], sm.mean[rows],
                          strict=True):
        y[si[s], ji[(f, j)]] = m
        seen[si[s], ji[(f, j)]] = True
    if not seen.all():
        s, j = np.argwhere(~seen)[0]
        raise DataError(
            f"{source}: branch {branch!r} on set {sm.set!r} has no rows for subject "
            f"{subjects[j][1]!r} (fold {subjects[j][0]!r}) in seed {seeds[s]} but has them in "
            f"other seeds ({int((~seen).sum())} seed x subject cell(s) missing); every seed "
            f"must evaluate the same subjects")
    return _Matrix(seeds, subjects, y, int(sm.n_slices[rows].sum()),
                   int(sm.n_undefined[rows].sum()))


def _defined(y: np.ndarray) -> np.ndarray:
    return ~np.isnan(y).any(axis=0)


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator per result, so a number does not depend on what else was computed."""
    return np.random.default_rng([seed, zlib.crc32("|".join(names).encode())])


def _intervals(y, fold, n_boot, rng, level):
    """(crossed result, Satterthwaite interval or None, bootstrap interval or None)."""
    r = _core.crossed(y, fold)
    one = y.shape[0] == 1
    ci = None
    if not np.isnan(r.df[0]):
        lo, hi = _core.t_interval(r.mean, r.se, r.df, level)
        ci = Interval(low=float(lo[0]), high=float(hi[0]), level=level,
                      method=TEST_ONE_SEED.replace(" test", "") if one else
                      "Satterthwaite t (seeds x subjects)")
    boot = _core.bootstrap_means(y, fold, n_boot, rng)[0]
    q = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    ci_boot = None
    if y.size > 1:
        ci_boot = Interval(low=float(q[0]), high=float(q[1]), level=level,
                           method="bootstrap over subjects (1 seed)" if one else
                           "hierarchical bootstrap (seeds x subjects)")
    return r, ci, ci_boot


def _fold_codes(subjects) -> np.ndarray:
    folds = sorted({f for f, _ in subjects})
    return np.asarray([folds.index(f) for f, _ in subjects], dtype=np.int64)


def _estimate(m: _Matrix, branch, set_, metric, hib, n_boot, seed, level) -> Estimate:
    keep = _defined(m.y)
    y = m.y[:, keep]
    subjects = [s for s, k in zip(m.subjects, keep, strict=True) if k]
    common = {"branch": branch, "set": set_, "metric": metric, "n_seeds": len(m.seeds),
                  "n_subjects": int(keep.sum()), "n_slices": m.n_slices, "n_undefined": m.n_undefined,
                  "n_subjects_dropped": int((~keep).sum()), "higher_is_better": hib,
                  "interval": SUBJECTS_ONLY if len(m.seeds) == 1 else SEEDS_AND_SUBJECTS}
    if y.shape[1] == 0:
        return Estimate(mean=None, ci=None, ci_t=None, ci_boot=None, **common,
                        note=f"{metric} is undefined on every slice of every subject")
    r, ci, ci_boot = _intervals(y, _fold_codes(subjects), n_boot,
                                _rng(seed, "estimate", branch, set_, metric), level)
    units = y.mean(axis=1) if y.shape[0] > 1 else y[0]  # seed means, or subject means
    ci_t, note = None, ""
    if units.size > 1:
        sd = units.std(ddof=1) / np.sqrt(units.size)
        lo, hi = _core.t_interval(units.mean(), sd, units.size - 1, level)
        ci_t = Interval(low=float(lo), high=float(hi), level=level,
                        method="t over subject means (1 seed)" if y.shape[0] == 1 else
                        "t over seed means (these subjects fixed)")
    else:
        note = "one seed and one subject: no interval can be computed"
    if len(m.seeds) == 1:
        note = (note + " " if note else "") + ("1 seed: intervals are over subjects only "
                                               "and leave out seed-to-seed variation")
    return Estimate(mean=float(r.mean[0]), ci=ci, ci_t=ci_t, ci_boot=ci_boot, note=note,
                    **common)


def _compare(mb: _Matrix, mc: _Matrix, branch, control, set_, metric, hib, *, n_boot, seed,
             level, alpha, power, resolve, source) -> dict:
    if mb.seeds != mc.seeds:
        only = sorted(set(mb.seeds) ^ set(mc.seeds))
        raise DataError(
            f"{source}: on set {set_!r}, branch {branch!r} has seeds {list(mb.seeds)} and "
            f"control {control!r} has seeds {list(mc.seeds)}; seed(s) {only} are not in both. "
            f"Pass seeds=[...] to compare on the common seeds, or list the incomplete branch as "
            f"missing")
    if mb.subjects != mc.subjects:
        diff = sorted(set(mb.subjects) ^ set(mc.subjects))[:5]
        raise DataError(f"{source}: on set {set_!r}, branch {branch!r} and control {control!r} "
                        f"were evaluated on different subjects (e.g. {diff}); pairing needs "
                        f"the same subjects")
    sign = 1.0 if hib else -1.0
    d = sign * (mb.y - mc.y)
    keep = _defined(d)
    d = d[:, keep]
    subjects = [s for s, k in zip(mb.subjects, keep, strict=True) if k]
    s, n = d.shape
    orient = (f"{branch} - {control}" if hib else f"{control} - {branch}") + \
        f" (positive = {branch} better)"
    out = {"branch": branch, "control": control, "set": set_, "metric": metric, "diff": None,
               "orientation": orient, "ci": None, "ci_boot": None, "p": None, "se": None, "df": None,
               "var_seed": None, "var_subject": 0.0, "var_residual": None, "effect_size": None,
               "effect": EFFECT, "test": TEST_ONE_SEED if s == 1 else TEST, "n_seeds": s,
               "n_subjects": n, "n_subjects_dropped": int((~keep).sum()), "mde": None, "resolve": resolve,
               "seeds_needed": None, "seeds_note": "", "mde_seeds_limit": None, "higher_is_better": hib,
               "interval": SUBJECTS_ONLY if s == 1 else SEEDS_AND_SUBJECTS, "note": ""}
    if n == 0:
        out["note"] = f"{metric} is undefined for every subject in some seed: nothing to pair"
        return out
    fold = _fold_codes(subjects)
    r, ci, ci_boot = _intervals(d, fold, n_boot, _rng(seed, branch, control, set_, metric),
                                level)
    out.update(diff=float(r.mean[0]), ci=ci, ci_boot=ci_boot, se=float(r.se[0]),
               var_subject=float(r.s2_subj[0]))
    dz = _core.cohen_dz(d[None])[0]
    out["effect_size"] = None if np.isnan(dz) else float(dz)
    if np.isnan(dz):
        out["note"] = "d_z undefined: fewer than 2 subjects or no spread between them"
    if s > 1:
        out.update(var_seed=float(r.s2_seed[0]), var_residual=float(r.s2_res[0]))
    if np.isnan(r.df[0]):
        out["note"] = "one seed and one subject per fold: no variance, no test"
        return out
    out.update(p=float(_core.t_test(r.mean, r.se, r.df)[0]), df=float(r.df[0]),
               mde=float(_core.mde(r.se, r.df, alpha, power)[0]))
    if s == 1:
        out["seeds_note"] = ("seed-to-seed variation cannot be estimated from 1 seed; run at "
                             "least 2 (better 3 or more) to project the seeds needed")
        out["note"] = "1 seed: the interval and test are over subjects only"
        return out
    need, limit = _core.seeds_needed(r.fold_components[0], r.fold_sizes, resolve, alpha,
                                     power)
    out.update(seeds_needed=need, mde_seeds_limit=limit)
    if need is None:
        out["seeds_note"] = (
            f"not reachable by seeds alone: with these {n} subjects the subject term alone "
            f"gives an MDE of {limit:.2g}, above {resolve:g}; add subjects"
            if limit > resolve else f"more than 10000 seeds would be needed for {resolve:g}")
    if s == 2:
        out["note"] = ("2 seeds: the seed variance has 1 degree of freedom, intervals are "
                       "approximate")
    return out


def _known(kind: str, names: Sequence[str], valid: Sequence[str], source: str) -> None:
    for name in names:
        if name not in valid:
            raise InputError(f"{source}: unknown {kind} {name!r}. " + suggest(name, valid))


def study_statistics(
    table: Table, *, branches: Sequence[str], controls: Sequence[str] = (),
    sets: Sequence[str] = ("val",), metrics: Sequence[str] = ("dsc",), n_boot: int = 2000,
    seed: int = 0, level: float = 0.95, resolve: float | Mapping[str, float] = 0.5,
    alpha: float = 0.05, power: float = 0.8, seeds: Sequence[int] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
) -> StudyStatistics:
    """Estimates of every branch and control, and every branch against every control.

    Args:
        table: the results table (:func:`read_table`).
        branches: branch labels to compare against each control (e.g. the attributors).
        controls: control labels (``random``, ``none``, ``none_matched``, ``standard``, ...).
        sets: evaluation sets, including convergence sets such as ``"val@ada3"``.
        metrics: metric columns.
        n_boot: bootstrap replicates.
        seed: seed of the bootstrap (each result draws from its own stream derived from it).
        level: confidence level of the intervals.
        resolve: the difference (metric units, or a mapping metric -> difference) for which
            ``seeds_needed`` is computed.
        alpha: two-sided significance level of the minimum detectable difference.
        power: power of the minimum detectable difference.
        seeds: restrict the table to these seeds (default: all).
        higher_is_better: orientation of metrics other than dsc, hsd, hd95, tpr, tnr, ppv.

    Returns:
        The frozen :class:`StudyStatistics`; Holm's correction runs over all comparisons.

    Raises:
        InputError: unknown branch, control, set, metric or seed names, or bad settings.
        DataError: a control missing for some seed, subjects not crossed with seeds, no rows.
    """
    src = table.source
    if not branches:
        raise InputError("study_statistics needs at least one branch")
    if not 0 < level < 1 or not 0 < alpha < 1 or not 0 < power < 1 or n_boot < 1:
        raise InputError(f"need 0 < level, alpha, power < 1 and n_boot >= 1; got level={level}"
                         f", alpha={alpha}, power={power}, n_boot={n_boot}")
    if len(set(seeds or ())) != len(seeds or ()):
        raise InputError(f"seeds lists a seed twice: {list(seeds)}")
    if seeds is not None:
        _known("seed", [str(s) for s in seeds], [str(s) for s in table.values("seed")], src)
        table = table.subset(np.isin(table["seed"], list(seeds)))
    all_branches = table.values("branch")
    _known("branch", branches, all_branches, src)
    _known("control", controls, all_branches, src)
    _known("set", sets, table.values("set"), src)
    _known("metric", metrics, table.metrics, src)
    orient = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    for m in metrics:
        if m not in orient:
            raise InputError(f"metric {m!r}: orientation unknown; pass higher_is_better="
                             f"{{{m!r}: True or False}}")
    labels = list(dict.fromkeys([*branches, *controls]))
    estimates, rows = [], []
    for set_ in sets:
        by_metric = subject_means_many(table, set_, metrics)
        for metric in metrics:
            sm = by_metric[metric]
            mats = {b: _matrix(sm, b, src) for b in labels}
            hib = orient[metric]
            res = resolve[metric] if isinstance(resolve, Mapping) else resolve
            for b in labels:
                estimates.append(_estimate(mats[b], b, set_, metric, hib, n_boot, seed, level))
            for b in branches:
                for c in controls:
                    if b != c:
                        rows.append(_compare(mats[b], mats[c], b, c, set_, metric, hib,
                                             n_boot=n_boot, seed=seed, level=level,
                                             alpha=alpha, power=power, resolve=res, source=src))
    p = np.array([np.nan if r["p"] is None else r["p"] for r in rows])
    adj = _core.holm(p)
    family = int((~np.isnan(p)).sum())
    comparisons = tuple(
        Comparison(**r, p_holm=None if np.isnan(a) else float(a), holm_family=family)
        for r, a in zip(rows, adj, strict=True))
    used = tuple(sorted({int(s) for s in table["seed"]}))
    notes = []
    if len(used) == 1:
        notes.append(f"1 seed ({used[0]}): every interval and test is over subjects only and "
                     f"leaves out seed-to-seed variation")
    return StudyStatistics(branches=tuple(branches), controls=tuple(controls), sets=tuple(sets),
                           metrics=tuple(metrics), seeds=used, level=level, alpha=alpha,
                           power=power, n_boot=n_boot, seed=seed, estimates=tuple(estimates),
                           comparisons=comparisons, notes=tuple(notes))
