"""The numerical core: the crossed seeds x persons design, the fold design, tests, Holm, power.

Every function works on a batch of studies at once: ``Y: (K, S, N) float64`` holds K studies
with S seeds (rows) and N persons (columns), each entry a person's mean (or a paired
difference of two branches' person means) in one seed. ``fold: (N,) int`` gives each person's
fold. Production calls these with K = 1; the calibration simulations (bench/bench_stats.py,
tests/test_calibration.py) call the very same functions with K in the thousands.

**One fold (a single split).** Seeds and persons are crossed and both random (a new study
draws new seeds and new persons)::

    Y[s, j] = mu + a[s] + b[j] + e[s, j]    a ~ (0, s2_seed), b ~ (0, s2_person), e ~ (0, s2_res)

    Var(grand mean) = s2_seed / S + s2_person / N + s2_res / (S N)

estimated from the two-way ANOVA mean squares as ``(MS_seed + max(0, MS_person - MS_res)) /
(S N)`` with Satterthwaite's degrees of freedom less half a degree (never below S - 1).
``MS_seed / (S N)`` estimates the first and the last term together, so the seed term is
*never* dropped (dropping it when MS_seed <= MS_res made the first Holm step ~10x too liberal
at 3 seeds); the person term is truncated at zero only when there is no evidence of person
variation. The half degree: Satterthwaite's df is estimated from the mean squares the SE is
made of, and is too large exactly when MS_seed is small, in the tail where Holm's first step
decides (1.3x too many p < 0.05/30 at 3 seeds without it; nominal with it).

**Several folds (leave-one-site-out).** A fold's models are trained on other persons than the
next fold's, and a fold's persons share its site: persons of one fold are not independent.
Each fold's mean over its seeds and test persons is one observation; the estimate is the mean
of the F fold means (each left-out site counts once) and its variance ``s^2 / F`` with F - 1
degrees of freedom, which is unbiased whatever the fold sizes and includes every component
(seed, person, site). A fold with one person is then no problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

from ada_core.errors import InputError

#: Degrees of freedom taken off Satterthwaite's estimate (see ``_one_fold``).
DF_CORRECTION = 0.5

__all__ = [
    "DF_CORRECTION",
    "Design",
    "bootstrap_means",
    "cohen_dz",
    "design",
    "holm",
    "mde",
    "needed",
    "power",
    "t_interval",
    "t_test",
]


@dataclass(frozen=True)
class Design:
    """Mean, standard error, df and variance components of K studies, each ``(K,)``.

    ``kind`` is ``"crossed"`` (one fold, S >= 2, N >= 2), ``"persons"`` (one seed: over persons
    only), ``"seeds"`` (one person: over seeds only; generalises to no other person), ``"folds"``
    (F >= 2 folds as units) or ``"none"`` (nothing estimable). ``df`` is NaN where no variance
    can be estimated. Components (one fold): ``ms_seed``, ``ms_person``, ``ms_res`` (NaN where
    the design has no such term); ``fold_means: (K, F)``; ``seed_part: (K,)`` the part of the
    variance that falls as 1/S (for projections).
    """

    kind: str
    mean: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ms_seed: np.ndarray
    ms_person: np.ndarray
    ms_res: np.ndarray
    seed_part: np.ndarray
    n_seeds: int
    fold_sizes: tuple[int, ...]

    @property
    def n_persons(self) -> int:
        return int(sum(self.fold_sizes))

    @property
    def n_folds(self) -> int:
        return len(self.fold_sizes)


def _check(y: np.ndarray, fold: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y[None]
    if y.ndim != 3 or y.shape[1] < 1 or y.shape[2] < 1:
        raise InputError(f"expected Y: (K, S, N) with S, N >= 1, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("Y holds NaN or infinite values; drop undefined persons first")
    fold = np.zeros(y.shape[2], dtype=np.int64) if fold is None else np.asarray(fold)
    if fold.shape != (y.shape[2],):
        raise InputError(f"fold must have one entry per person ({y.shape[2]}), got {fold.shape}")
    return y, fold


def _satterthwaite(terms: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Variance and Satterthwaite df of ``sum(c * MS)`` from ``[(c * MS, df_MS), ...]``."""
    var = sum(t for t, _ in terms)
    denom = sum(t**2 / d for t, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, var**2 / denom, np.nan)
    return var, df


def _mean_squares(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-way ANOVA mean squares (seeds, persons, residual) of ``(K, S, N)``, S, N >= 2."""
    _, s, n = y.shape
    m = y.mean(axis=(1, 2))
    row, col = y.mean(axis=2), y.mean(axis=1)
    ms_a = n * ((row - m[:, None]) ** 2).sum(1) / (s - 1)
    ms_b = s * ((col - m[:, None]) ** 2).sum(1) / (n - 1)
    resid = y - row[:, :, None] - col[:, None, :] + m[:, None, None]
    ms_e = (resid**2).sum(axis=(1, 2)) / ((s - 1) * (n - 1))
    return ms_a, ms_b, ms_e


def _one_fold(y: np.ndarray) -> Design:
    k, s, n = y.shape
    mean = y.mean(axis=(1, 2))
    nan = np.full(k, np.nan)
    if s == 1 and n == 1:
        return Design("none", mean, nan, nan, nan, nan, nan, nan, s, (n,))
    if s == 1:  # persons only: the one seed's effect is part of the mean
        ms_b = ((y[:, 0] - mean[:, None]) ** 2).sum(1) / (n - 1)
        return Design("persons", mean, np.sqrt(ms_b / n), np.full(k, n - 1.0), nan, ms_b, nan,
                      nan, s, (n,))  # fmt: skip
    if n == 1:  # seeds only: nothing is known of other persons
        ms_a = ((y[:, :, 0] - mean[:, None]) ** 2).sum(1) / (s - 1)
        return Design("seeds", mean, np.sqrt(ms_a / s), np.full(k, s - 1.0), ms_a, nan, nan,
                      ms_a / s, s, (n,))  # fmt: skip
    ms_a, ms_b, ms_e = _mean_squares(y)
    use_b = ms_b > ms_e
    scale = 1.0 / (s * n)
    terms = [(scale * ms_a, s - 1.0), (scale * use_b * ms_b, n - 1.0),
             (-scale * use_b * ms_e, (s - 1.0) * (n - 1.0))]  # fmt: skip
    var, df = _satterthwaite(terms)
    # Satterthwaite's df comes from the same mean squares as the SE: where MS_seed is small
    # (the tail, where Holm decides) it is overestimated. Half a degree less, never below the
    # seed term's own S - 1, is nominal down to alpha = 0.05/100 (bench/bench_stats.py).
    df = np.maximum(s - 1.0, df - DF_CORRECTION)
    return Design("crossed", mean, np.sqrt(var), df, ms_a, ms_b, ms_e, scale * ms_a, s, (n,))


def _folds(y: np.ndarray, fold: np.ndarray) -> Design:
    k, s, _ = y.shape
    folds = np.unique(fold)
    sizes = tuple(int((fold == f).sum()) for f in folds)
    means = np.stack([y[:, :, fold == f].mean(axis=(1, 2)) for f in folds], axis=1)  # (K, F)
    f = len(folds)
    var = means.var(axis=1, ddof=1) / f
    seed_part = np.zeros(k)  # the within-fold seed term, each fold's MS_seed / (S N_f)
    if s > 1:
        for g, size in zip(folds, sizes, strict=True):
            cols = y[:, :, fold == g].mean(axis=2)  # (K, S) seed means of this fold
            seed_part += cols.var(axis=1, ddof=1) / s / f**2
    nan = np.full(k, np.nan)
    return Design("folds", means.mean(axis=1), np.sqrt(var), np.full(k, f - 1.0), nan, nan, nan,
                  seed_part, s, sizes)  # fmt: skip


def design(y: np.ndarray, fold: np.ndarray | None = None) -> Design:
    """The estimate, its standard error and df for K studies (see the module docstring).

    Args:
        y: ``(K, S, N)`` (or ``(S, N)``) person means or paired differences, no NaN.
        fold: ``(N,)`` fold index of each person; None for one fold.
    """
    y, fold = _check(y, fold)
    if np.unique(fold).size > 1:
        return _folds(y, fold)
    return _one_fold(y)


def t_interval(mean, se, df, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``mean -+ t_{(1+level)/2, df} * se`` (NaN where df is NaN)."""
    q = sps.t.ppf((1 + level) / 2, df)
    return mean - q * se, mean + q * se


def t_test(mean, se, df) -> np.ndarray:
    """Two-sided p of ``t = mean / se`` on ``df`` degrees of freedom (1 where se == 0 == mean)."""
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.inf * np.sign(mean)))
    return 2 * sps.t.sf(np.abs(t), df)


def bootstrap_means(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-way (pigeonhole) bootstrap of the grand mean of one fold: ``(K, n_boot)`` means.

    Each replicate draws S seeds and, independently, N persons with replacement and takes
    the mean of the S x N resampled cells (Owen 2007), computed from the resampling counts.
    """
    y, _ = _check(y, None)
    k, s, n = y.shape
    c_seed = _counts(rng.integers(0, s, (k * n_boot, s)), s).reshape(k, n_boot, s)
    c_pers = _counts(rng.integers(0, n, (k * n_boot, n)), n).reshape(k, n_boot, n)
    ys = np.einsum("ksn,kbn->kbs", y, c_pers)
    return np.einsum("kbs,kbs->kb", ys, c_seed) / (s * n)


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """How often each of ``size`` indices occurs in each row of ``idx``: (R, size) float."""
    r = idx.shape[0]
    flat = (idx + size * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * size).reshape(r, size).astype(np.float64)


def cohen_dz(y: np.ndarray) -> np.ndarray:
    """Cohen's d_z of ``(K, S, N)`` differences: mean / SD (ddof 1) of the N seed-averaged
    person differences; NaN with fewer than 3 persons or zero SD."""
    d = np.asarray(y, float).mean(axis=-2)
    if d.shape[-1] < 3:
        return np.full(d.shape[:-1], np.nan)
    sd = d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, d.mean(axis=-1) / sd, np.nan)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values, along the last axis (same order as ``p``; NaN
    entries stay NaN and do not count towards the family)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim > 1:
        return np.stack([holm(row) for row in p.reshape(-1, p.shape[-1])]).reshape(p.shape)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def power(delta: float, se: float, df: float, alpha: float) -> float:
    """Power of the two-sided t test at ``alpha`` for a true difference ``delta`` (exact,
    noncentral t)."""
    if not se > 0 or not df > 0:
        return float("nan")
    return _power_at(sps.t.ppf(1 - alpha / 2, df), df, delta / se)


def _power_at(q: float, df: float, nc: float) -> float:
    """Power of the two-sided t test with critical value ``q`` at noncentrality ``nc``.

    The far tail is ``P(T < -q) = sf(q, df, -nc)``: scipy's ``nct.cdf(-q, df, nc)`` returns
    NaN where that tail is below ~1e-16 (at df 2 from nc ~ 20 on, e.g.), and treating the NaN
    as a power of 1 put a jump into the power curve that the MDE search took for its root (at
    3 seeds and a Holm-sized alpha an MDE whose power was 0.77, not 0.8).
    """
    value = float(sps.nct.sf(q, df, nc) + sps.nct.sf(q, df, -nc))
    if not np.isfinite(value):  # not seen on df 1-200, nc 0-200; kept as a last resort
        value = 1.0 if abs(nc) > q else 0.0
    return value


def mde(se: float, df: float, alpha: float = 0.05, target: float = 0.8) -> float:
    """Smallest true difference the two-sided t test at ``alpha`` detects with power
    ``target`` (exact noncentral t, solved for the noncentrality)."""
    if not se > 0 or not df > 0:
        return float("nan")
    q = sps.t.ppf(1 - alpha / 2, df)
    hi = 2 * (q + sps.norm.ppf(target)) + 10
    while _power_at(q, df, hi) < target:
        hi *= 2
    return float(optimize.brentq(lambda nc: _power_at(q, df, nc) - target, 0.0, hi,
                                 xtol=1e-10)) * se  # fmt: skip


def _projected(d: Design, s2: int, n2: int) -> tuple[float, float]:
    """Variance and Satterthwaite df of the crossed design's estimate at S' seeds, N' persons.

    ``MS_seed / (S' N)`` carries the seed term (and the residual part that falls with seeds);
    it is never truncated, and with more persons it is kept as it is, which is conservative.
    The person term ``(MS_person - MS_res) / (S N')`` falls with persons.
    """
    s, n = d.n_seeds, d.n_persons
    ms_a, ms_b, ms_e = float(d.ms_seed[0]), float(d.ms_person[0]), float(d.ms_res[0])
    terms = [(ms_a / (s2 * n), s2 - 1.0)]
    if ms_b > ms_e:
        terms += [(ms_b / (s * n2), n2 - 1.0), (-ms_e / (s * n2), (s2 - 1.0) * (n2 - 1.0))]
    var, df = _satterthwaite([(np.asarray(t), dof) for t, dof in terms])
    return float(var), max(s2 - 1.0, float(df) - DF_CORRECTION)


def needed(d: Design, resolve: float, alpha: float, target: float = 0.8,
           limit: int = 10_000) -> tuple[int | None, int | None, float]:  # fmt: skip
    """Seeds (with these persons) and persons (with these seeds) for an MDE <= ``resolve``.

    Returns ``(seeds, persons, limit_mde)``: None where more than ``limit`` would be needed
    or where the other factor's term alone keeps the MDE above ``resolve``; ``limit_mde`` is
    the MDE with infinitely many seeds (the person and fold terms alone). With folds, only
    seeds are projected (the fold means' spread stays); more folds or sites are what helps.
    One study (K = 1) only.
    """
    if d.kind not in ("crossed", "folds") or not np.isfinite(d.se[0]):
        return None, None, float("nan")
    s, n = d.n_seeds, d.n_persons
    if d.kind == "folds":
        var, df = float(d.se[0]) ** 2, float(d.df[0])
        seed_var = min(float(d.seed_part[0]), var)

        def at(s2: int, n2: int) -> tuple[float, float]:
            return var - seed_var + seed_var * s / s2, df

        limit_var, limit_df = var - seed_var, df
    else:
        def at(s2: int, n2: int) -> tuple[float, float]:
            return _projected(d, s2, n2)

        limit_var, limit_df = _projected(d, 10**9, n)
        limit_var -= float(d.ms_seed[0]) / (10**9 * n)

    def resolves(s2: int, n2: int) -> bool:
        v, dof = at(s2, n2)
        # MDE <= resolve exactly when the power at resolve reaches the target (the power
        # grows with the difference): one evaluation instead of solving for the MDE
        return v <= 0 or power(resolve, float(np.sqrt(v)), dof, alpha) >= target

    limit_mde = mde(np.sqrt(limit_var), limit_df, alpha, target) if limit_var > 0 else 0.0
    seeds = None
    if limit_mde <= resolve:
        seeds = _first(lambda s2: resolves(s2, n), limit)
    persons = None
    if d.kind == "crossed":
        persons = _first(lambda n2: resolves(s, n2), limit)
    return seeds, persons, limit_mde


def _first(ok, limit: int) -> int | None:  # noqa: ANN001 - a monotone predicate on counts
    """The smallest count in ``2..limit`` for which ``ok`` holds (it is monotone: more seeds
    or persons never widen the projected interval), found by doubling then bisection."""
    lo, hi = 1, 2
    while not ok(hi):
        if hi >= limit:
            return None
        lo, hi = hi, min(2 * hi, limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
