"""The omnibus test: do the methods differ from each other at all?

``y: (K, M, S, N)`` holds, for K studies, M methods' person means in S seeds and N persons.
Methods are fixed; seeds and persons are random and crossed, and every method-seed pair is its
own training run, so the method x seed interaction is real. The method mean square's expectation
``s2 + N s2_ms + S s2_mp + S N theta`` is matched by the quasi-F ratio (Satterthwaite 1946)::

    F' = MS_M / (MS_MS + max(0, MS_MP - MS_MSP))

on M - 1 and Satterthwaite's denominator df less half a degree (never below (M-1)(S-1)): the
same construction as the crossed t test (the seed x method term never dropped, the person x
method term truncated at zero), and for the same reason; Winer's F'' = (MS_M + MS_MSP) /
(MS_MS + MS_MP) was 1.5x too liberal at alpha = 0.01 with 3 seeds. With one seed it is the
persons x methods repeated-measures F ``MS_M / MS_MP``; with folds, the folds x methods F on
the fold means. bench/bench_stats.py checks its size by simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ada_core.errors import InputError
from ada_core.stats._core import DF_CORRECTION

__all__ = ["MethodEffect", "method_effect"]


@dataclass(frozen=True)
class MethodEffect:
    """The F test of the method effect for K studies, each ``(K,)``."""

    kind: str  # "quasi-F", "persons x methods", "seeds x methods", "folds x methods"
    f: np.ndarray
    df1: np.ndarray
    df2: np.ndarray
    p: np.ndarray


def _two_way(y: np.ndarray, kind: str) -> MethodEffect:
    """Methods x one random factor (persons, seeds or folds): ``(K, M, U)``."""
    _, m, u = y.shape
    g = y.mean(axis=(1, 2))
    mm, mu = y.mean(axis=2), y.mean(axis=1)
    ms_m = u * ((mm - g[:, None]) ** 2).sum(1) / (m - 1)
    resid = y - mm[:, :, None] - mu[:, None, :] + g[:, None, None]
    df2 = (m - 1) * (u - 1)
    ms_e = (resid**2).sum(axis=(1, 2)) / df2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(ms_e > 0, ms_m / ms_e, np.where(ms_m > 0, np.inf, np.nan))
    k = y.shape[0]
    return MethodEffect(kind, f, np.full(k, m - 1.0), np.full(k, float(df2)),
                        sps.f.sf(f, m - 1, df2))  # fmt: skip


def method_effect(y: np.ndarray, fold: np.ndarray | None = None) -> MethodEffect:
    """The omnibus F test of K studies (see the module docstring).

    Args:
        y: ``(K, M, S, N)`` (or ``(M, S, N)``) person means, no NaN, M >= 2.
        fold: ``(N,)`` fold of each person; None for one fold.

    Raises:
        InputError: fewer than two methods, or a design with no replication at all.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 3:
        y = y[None]
    if y.ndim != 4 or y.shape[1] < 2:
        raise InputError(f"expected Y: (K, M, S, N) with M >= 2 methods, got shape {y.shape}")
    _, m, s, n = y.shape
    if fold is not None and np.unique(fold).size > 1:
        means = np.stack([y[..., np.asarray(fold) == f].mean(axis=(2, 3))
                          for f in np.unique(fold)], axis=2)  # (K, M, F)  # fmt: skip
        return _two_way(means, "folds x methods")
    if s == 1 and n == 1:
        raise InputError("one seed and one person: the method effect cannot be tested")
    if s == 1:
        return _two_way(y[:, :, 0, :], "persons x methods")
    if n == 1:
        return _two_way(y[:, :, :, 0], "seeds x methods")
    g = y.mean(axis=(1, 2, 3))
    m_m, m_s, m_n = y.mean(axis=(2, 3)), y.mean(axis=(1, 3)), y.mean(axis=(1, 2))
    m_ms, m_mn, m_sn = y.mean(axis=3), y.mean(axis=2), y.mean(axis=1)
    df_m, df_ms, df_mn = m - 1.0, (m - 1.0) * (s - 1), (m - 1.0) * (n - 1)
    df_msn = (m - 1.0) * (s - 1) * (n - 1)
    ms_m = s * n * ((m_m - g[:, None]) ** 2).sum(1) / df_m
    ms_ms = n * ((m_ms - m_m[:, :, None] - m_s[:, None, :] + g[:, None, None]) ** 2).sum((1, 2)) / df_ms
    ms_mn = s * ((m_mn - m_m[:, :, None] - m_n[:, None, :] + g[:, None, None]) ** 2).sum((1, 2)) / df_mn
    resid = (y - m_ms[..., None] - m_mn[:, :, None, :] - m_sn[:, None] + m_m[:, :, None, None]
             + m_s[:, None, :, None] + m_n[:, None, None, :] - g[:, None, None, None])  # fmt: skip
    ms_msn = (resid**2).sum((1, 2, 3)) / df_msn
    use = ms_mn > ms_msn
    den = ms_ms + use * (ms_mn - ms_msn)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(den > 0, ms_m / den, np.nan)
        df2 = den**2 / (ms_ms**2 / df_ms + (use * ms_mn) ** 2 / df_mn + (use * ms_msn) ** 2 / df_msn)
    df2 = np.maximum(df_ms, df2 - DF_CORRECTION)
    df1 = np.full_like(f, df_m)
    return MethodEffect("quasi-F", f, df1, df2, sps.f.sf(f, df1, df2))
