"""The numerical core: crossed seeds x subjects variance, tests, bootstrap, Holm, power.

Every function works on a batch of studies at once: a matrix of subject means (or of paired
differences) ``Y: (K, S, N) float64`` holds K studies with S seeds (rows) and N subjects
(columns). ``fold: (N,) int`` gives each subject's fold (0 .. F-1); with one fold it is all
zeros. Production calls these with K = 1; the simulation tests call them with K in the
hundreds, so the test exercises the very code that produces the numbers.

The model behind the formulas, per fold f (subjects of different folds belong to different
trained models)::

    Y[s, j] = mu + a[s] + b[j] + e[s, j]      a ~ (0, s2_seed), b ~ (0, s2_subj), e ~ (0, s2_res)

Seeds and subjects are both random (a new study draws new seeds and new subjects), so the
variance of the grand mean is ``s2_seed / S + s2_subj / N + s2_res / (S N)``. It is estimated
from the two-way ANOVA mean squares, ``(MS_seed + MS_subj - MS_res) / (S N)`` when both main
components are positive, with Satterthwaite's degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ada_core.errors import InputError

__all__ = [
    "Crossed",
    "bootstrap_means",
    "cohen_dz",
    "crossed",
    "design_se",
    "holm",
    "mde",
    "seeds_needed",
    "t_interval",
    "t_test",
]


@dataclass(frozen=True)
class Crossed:
    """Mean, standard error and variance components of K crossed studies, each ``(K,)``.

    ``s2_seed``, ``s2_subj`` and ``s2_res`` are the effective components of the whole study,
    defined so that ``se**2 == s2_seed / S + s2_subj / N + s2_res / (S * N)`` with N all
    subjects (with one fold they are the plain ANOVA components). ``df`` is Satterthwaite's;
    it is NaN where the design cannot estimate any variance (one seed and one subject per
    fold). ``fold_components: (K, F, 3)`` holds each fold's (s2_seed, s2_subj, s2_res).
    """

    mean: np.ndarray
    se: np.ndarray
    df: np.ndarray
    s2_seed: np.ndarray
    s2_subj: np.ndarray
    s2_res: np.ndarray
    fold_components: np.ndarray
    n_seeds: int
    fold_sizes: tuple[int, ...]


def _check(y: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y[None]
    if y.ndim != 3 or y.shape[1] < 1 or y.shape[2] < 1:
        raise InputError(f"expected Y: (K, S, N) with S, N >= 1, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("Y holds NaN or infinite values; drop undefined subjects first")
    fold = np.zeros(y.shape[2], dtype=np.int64) if fold is None else np.asarray(fold)
    if fold.shape != (y.shape[2],):
        raise InputError(f"fold must have one entry per subject ({y.shape[2]}), got {fold.shape}")
    return y, fold


def _satterthwaite(terms: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Variance and Satterthwaite df of ``sum(c * MS)`` from ``[(c * MS, df_MS), ...]``."""
    var = sum(t for t, _ in terms)
    denom = sum(t**2 / d for t, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, var**2 / denom, np.nan)
    return var, df


def _fold_terms(y: np.ndarray, weight: float) -> tuple[list[tuple[np.ndarray, float]], np.ndarray]:
    """The terms of ``weight**2 * Var(mean of this fold)`` and the fold's components (K, 3).

    Components are truncated at zero (a negative variance estimate means "no evidence of
    this component"); the linear combination of mean squares changes with the truncation, so
    the Satterthwaite df always describes the variance actually used.
    """
    k, s, n = y.shape
    m = y.mean(axis=(1, 2))
    row = y.mean(axis=2)
    col = y.mean(axis=1)
    scale = weight**2 / (s * n)
    zero = np.zeros(k)
    if s == 1 and n == 1:
        return [], np.stack([zero, zero, zero], axis=1)
    if s == 1:  # subjects only: the one seed's effect is confounded with the mean
        ms_b = ((col - m[:, None]) ** 2).sum(1) / (n - 1)
        return [(scale * ms_b, n - 1)], np.stack([zero, ms_b, zero], axis=1)
    if n == 1:  # one subject in this fold: its variation is in the seed term
        ms_a = ((row - m[:, None]) ** 2).sum(1) / (s - 1)
        return [(scale * ms_a, s - 1)], np.stack([ms_a, zero, zero], axis=1)
    df_a, df_b, df_e = s - 1, n - 1, (s - 1) * (n - 1)
    ms_a = n * ((row - m[:, None]) ** 2).sum(1) / df_a
    ms_b = s * ((col - m[:, None]) ** 2).sum(1) / df_b
    resid = y - row[:, :, None] - col[:, None, :] + m[:, None, None]
    ms_e = (resid**2).sum(axis=(1, 2)) / df_e
    use_a, use_b = ms_a > ms_e, ms_b > ms_e
    c_e = 1.0 - use_a - use_b
    terms = [(scale * use_a * ms_a, df_a), (scale * use_b * ms_b, df_b), (scale * c_e * ms_e, df_e)]
    comps = np.stack(
        [use_a * (ms_a - ms_e) / n, use_b * (ms_b - ms_e) / s, ms_e], axis=1
    )
    return terms, comps


def crossed(y: np.ndarray, fold: np.ndarray | None = None) -> Crossed:
    """Grand mean, its standard error and the variance components of crossed studies.

    Args:
        y: ``(K, S, N)`` (or ``(S, N)``) subject means or paired differences, no NaN.
        fold: ``(N,)`` fold index of each subject; None for one fold. Folds are combined with
            weights N_f / N (the grand mean is the mean over all subjects).

    Returns:
        A :class:`Crossed` with ``(K,)`` arrays.
    """
    y, fold = _check(y, fold)
    k, s, n = y.shape
    folds = np.unique(fold)
    terms: list[tuple[np.ndarray, float]] = []
    comps, sizes = [], []
    for f in folds:
        cols = fold == f
        w = cols.sum() / n
        t, c = _fold_terms(y[:, :, cols], w)
        terms += t
        comps.append(c)
        sizes.append(int(cols.sum()))
    comp = np.stack(comps, axis=1)
    w = np.asarray(sizes) / n
    if terms:
        var, df = _satterthwaite(terms)
    else:
        var, df = np.zeros(k), np.full(k, np.nan)
    return Crossed(
        mean=y.mean(axis=(1, 2)),
        se=np.sqrt(var),
        df=df,
        s2_seed=(comp[:, :, 0] * w**2).sum(1),
        s2_subj=(comp[:, :, 1] * w).sum(1),
        s2_res=(comp[:, :, 2] * w).sum(1),
        fold_components=comp,
        n_seeds=s,
        fold_sizes=tuple(sizes),
    )


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


def bootstrap_means(
    y: np.ndarray, fold: np.ndarray | None, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Hierarchical (two-way) bootstrap of the grand mean: ``(K, n_boot)`` resampled means.

    Each replicate draws S seeds with replacement and, independently, N subjects with
    replacement within each fold (so each fold keeps its size), and takes the mean of the
    S x N resampled cells. That is Owen's (2007) pigeonhole bootstrap; it is computed from
    the resampling counts, ``mean* = c_seed . Y . c_subj / (S N)``, without copying Y.
    """
    y, fold = _check(y, fold)
    k, s, n = y.shape
    c_seed = _counts(rng.integers(0, s, (k * n_boot, s)), s).reshape(k, n_boot, s)
    c_subj = np.zeros((k * n_boot, n))
    for f in np.unique(fold):
        cols = np.flatnonzero(fold == f)
        pick = cols[rng.integers(0, cols.size, (k * n_boot, cols.size))]
        c_subj += _counts(pick, n)
    ys = np.einsum("ksn,kbn->kbs", y, c_subj.reshape(k, n_boot, n))
    return np.einsum("kbs,kbs->kb", ys, c_seed) / (s * n)


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """How often each of ``size`` indices occurs in each row of ``idx``: (R, size) float."""
    r = idx.shape[0]
    flat = (idx + size * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * size).reshape(r, size).astype(np.float64)


def cohen_dz(y: np.ndarray) -> np.ndarray:
    """Cohen's d_z of ``(K, S, N)`` differences: mean / SD (ddof 1) of the N seed-averaged
    subject differences; NaN with one subject or zero SD."""
    d = np.asarray(y, float).mean(axis=-2)
    if d.shape[-1] < 2:
        return np.full(d.shape[:-1], np.nan)
    sd = d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, d.mean(axis=-1) / sd, np.nan)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as ``p``; NaN entries stay NaN and
    do not count towards the family)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def design_se(
    components: np.ndarray, fold_sizes, n_seeds
) -> tuple[np.ndarray, np.ndarray]:
    """Expected SE and Satterthwaite df of a design with ``n_seeds`` seeds (scalar or array).

    Args:
        components: ``(F, 3)`` per-fold (s2_seed, s2_subj, s2_res), from :func:`crossed`.
        fold_sizes: subjects per fold, kept as they are.
        n_seeds: S, broadcastable.

    The expected mean squares of that design (``s2_res + N_f s2_seed`` and so on) stand in
    for the observed ones; at the study's own size this reproduces :func:`crossed`'s SE and
    df exactly. Components estimated as zero stay zero.
    """
    s = np.asarray(n_seeds, dtype=np.float64)
    sizes = np.asarray(fold_sizes, dtype=np.float64)
    n = sizes.sum()
    terms: list[tuple[np.ndarray, np.ndarray]] = []
    for (a, b, e), nf in zip(np.asarray(components, float), sizes, strict=True):
        scale = (nf / n) ** 2 / (s * nf)
        df_a, df_b = s - 1, nf - 1
        if nf == 1:  # one subject: crossed() put all its variation in the seed term
            terms.append((scale * a, df_a))
            continue
        df_e = df_a * df_b
        if a > 0:
            terms.append((scale * (e + nf * a), df_a))
        if b > 0:
            terms.append((scale * (e + s * b), np.full_like(s, df_b)))
        c_e = 1.0 - (a > 0) - (b > 0)
        if e > 0 and c_e != 0:
            terms.append((scale * c_e * e, df_e))
    var = sum(t for t, _ in terms) if terms else np.zeros_like(s)
    denom = sum(t**2 / np.where(d > 0, d, np.nan) for t, d in terms) if terms else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        df = var**2 / denom
    return np.sqrt(var), df


def mde(se, df, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """Minimum detectable difference of a two-sided t test: ``(t_{1-a/2} + t_{power}) * se``."""
    return (sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se


def seeds_needed(
    components: np.ndarray, fold_sizes, resolve: float, alpha: float = 0.05,
    power: float = 0.8, max_seeds: int = 10_000,
) -> tuple[int | None, float]:
    """Smallest S whose MDE is <= ``resolve`` with these subjects, and the MDE as S -> oo.

    Returns ``(None, limit)`` when even infinitely many seeds leave an MDE above ``resolve``
    (the subject term alone is too large: more subjects are needed) or when more than
    ``max_seeds`` would be needed.
    """
    comps = np.asarray(components, float)
    sizes = np.asarray(fold_sizes, float)
    n = sizes.sum()
    w = sizes / n
    t_subj = w**2 * comps[:, 1] / sizes  # each fold's subject term as S -> oo
    subj_var = float(t_subj.sum())
    if subj_var > 0:
        df_inf = subj_var**2 / float((t_subj**2 / np.maximum(sizes - 1, 1)).sum())
        limit = float(mde(np.sqrt(subj_var), df_inf, alpha, power))
    else:
        limit = 0.0
    if limit > resolve:
        return None, limit

    def mde_at(s: np.ndarray) -> np.ndarray:
        se, df = design_se(comps, sizes, s)
        z = (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * se
        return np.where(np.isnan(df), z, mde(se, np.where(np.isnan(df), 1.0, df), alpha, power))

    s = np.arange(2, min(max_seeds, 100) + 1)
    hit = np.flatnonzero(mde_at(s) <= resolve)
    if hit.size:
        return int(s[hit[0]]), limit
    lo, hi = int(s[-1]), max_seeds  # MDE falls with S: bisect for the first S that resolves
    if lo >= hi or mde_at(np.array([hi]))[0] > resolve:
        return None, limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mde_at(np.array([mid]))[0] <= resolve else (mid, hi)
    return hi, limit
