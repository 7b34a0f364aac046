"""One estimate, one paired comparison: the numbers of a single cell of the study.

Both work on a :class:`Matrix` (one branch's person means, seeds x persons) and call the
batched core (:mod:`ada_core.stats._core`) with K = 1, the code the calibration simulations
run with K in the thousands.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from ada_core.errors import DataError
from ada_core.quantities import METRICS
from ada_core.stats import _core
from ada_core.stats._models import Interval

__all__ = ["DESIGN_WORDS", "Matrix", "bounded_interval", "compare", "estimate", "rng_for"]

#: What each design's interval covers, in words.
DESIGN_WORDS = {
    "crossed": "seeds and persons random (Satterthwaite t)",
    "persons": "persons only (1 seed): leaves out seed-to-seed variation",
    "seeds": "seeds only (1 person): says nothing of other persons",
    "folds": "folds as units (t over the fold means, F - 1 df)",
    "none": "none (one seed and one person)",
}
EFFECT = "Cohen's d_z (mean / SD of the seed-averaged person differences; 3+ persons)"


@dataclass(frozen=True)
class Matrix:
    """One branch's person means on one set and metric: ``y (S, N)``, NaN where undefined."""

    seeds: tuple[int, ...]
    persons: tuple[tuple[str, str], ...]  # (fold, person)
    y: np.ndarray
    n_subjects: int
    n_slices: int
    n_undefined: int

    def fold_codes(self, keep: np.ndarray) -> np.ndarray:
        kept = [f for (f, _), k in zip(self.persons, keep, strict=True) if k]
        names = sorted(set(kept))
        return np.asarray([names.index(f) for f in kept], dtype=np.int64)


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator per result, so a number does not depend on what else was computed."""
    return np.random.default_rng([seed, zlib.crc32("|".join(names).encode())])


def bounded_interval(mean: float, se: float, df: float, level: float, low: float | None,
                     high: float | None, what: str) -> Interval | None:  # fmt: skip
    """The design's t interval; for a metric bounded to [low, high] computed on the logit
    scale, for one bounded below only (a distance) on the log scale of ``mean - low`` (delta
    method both), and mapped back, so it never leaves the bounds."""
    if not (np.isfinite(se) and np.isfinite(df)):
        return None
    q = float(_core.t_interval(0.0, 1.0, df, level)[1])
    if low is None:
        return Interval(low=mean - q * se, high=mean + q * se, level=level, method=what)
    if high is None:
        x = mean - low
        if se == 0 or x <= 0:
            return Interval(low=max(low, mean - q * se), high=mean + q * se, level=level,
                            method=what + ", clipped to the metric's bound")  # fmt: skip
        s_log = se / x
        return Interval(low=low + x * math.exp(-q * s_log), high=low + x * math.exp(q * s_log),
                        level=level, method=what + ", log scale (delta method)")  # fmt: skip
    width = high - low
    p = (mean - low) / width
    if se == 0 or not 0 < p < 1:  # on a bound: the t interval, clipped to the bounds
        return Interval(low=max(low, mean - q * se), high=min(high, mean + q * se), level=level,
                        method=what + ", clipped to the metric's bounds")  # fmt: skip
    eta, s_eta = math.log(p / (1 - p)), se / (width * p * (1 - p))
    lo, hi = (low + width / (1 + math.exp(-v)) for v in (eta - q * s_eta, eta + q * s_eta))
    return Interval(low=lo, high=hi, level=level, method=what + ", logit scale (delta method)")


def _kept(m: Matrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = ~np.isnan(y).any(axis=0)
    return y[:, keep], m.fold_codes(keep), keep


def estimate(m: Matrix, branch: str, set_: str, metric: str, *, level: float, n_boot: int,
             seed: int, change: bool = False) -> dict:  # fmt: skip
    """The fields of an :class:`~ada_core.stats.Estimate` (``change``: the values are changes
    against a reference, so the metric's bounds do not apply)."""
    q = None if change else METRICS.get(metric)
    y, fold, keep = _kept(m, m.y)
    common = {"branch": branch, "set": set_, "metric": metric, "n_seeds": len(m.seeds),
              "n_persons": int(keep.sum()), "n_folds": max(1, len(set(fold.tolist()))),
              "n_subjects": m.n_subjects, "n_slices": m.n_slices, "n_undefined": m.n_undefined,
              "n_persons_dropped": int((~keep).sum()),
              "higher_is_better": METRICS[metric].higher_is_better if metric in METRICS
              else True}  # fmt: skip
    if y.shape[1] == 0:
        return {**common, "mean": None, "ci": None, "ci_boot": None, "design": "none",
                "interval": DESIGN_WORDS["none"],
                "note": f"{metric} is undefined on every slice of every person"}  # fmt: skip
    d = _core.design(y, fold)
    low, high = (q.low, q.high) if q is not None else (None, None)
    ci = bounded_interval(float(d.mean[0]), float(d.se[0]), float(d.df[0]), level, low, high,
                          DESIGN_WORDS[d.kind])  # fmt: skip
    boot = None
    if d.kind == "crossed":
        b = _core.bootstrap_means(y, n_boot, rng_for(seed, "estimate", branch, set_, metric))[0]
        lo, hi = np.quantile(b, [(1 - level) / 2, (1 + level) / 2])
        boot = Interval(low=float(lo), high=float(hi), level=level,
                        method="two-way bootstrap over seeds and persons (percentile)")
    note = "" if ci is not None else "no interval: " + DESIGN_WORDS[d.kind]
    if ci is None and float(d.se[0]) == 0:
        note = f"no interval: every person's {metric} is {float(d.mean[0]):g} in every seed"
    if d.kind in ("persons", "seeds"):
        note = "interval over " + DESIGN_WORDS[d.kind]
    return {**common, "mean": float(d.mean[0]), "ci": ci, "ci_boot": boot, "design": d.kind,
            "interval": DESIGN_WORDS[d.kind], "note": note}  # fmt: skip


def _check_pair(mb: Matrix, mc: Matrix, branch: str, control: str, set_: str, source: str) -> None:
    if mb.seeds != mc.seeds:
        only = sorted(set(mb.seeds) ^ set(mc.seeds))
        raise DataError(
            f"{source}: on set {set_!r}, branch {branch!r} has seeds {list(mb.seeds)} and "
            f"{control!r} has seeds {list(mc.seeds)}; seed(s) {only} are not in both. Pass "
            f"seeds=[...] to compare on the common seeds, or list the incomplete branch as "
            f"missing")
    if mb.persons != mc.persons:
        diff = sorted(set(mb.persons) ^ set(mc.persons))[:5]
        raise DataError(f"{source}: on set {set_!r}, branch {branch!r} and {control!r} were "
                        f"evaluated on different persons (e.g. {diff}); pairing needs the "
                        f"same persons")  # fmt: skip


def compare(mb: Matrix, mc: Matrix, branch: str, control: str, set_: str, metric: str, *,
            hib: bool, level: float, n_boot: int, seed: int, source: str) -> dict:  # fmt: skip
    """The fields of a :class:`~ada_core.stats.Comparison` before Holm and power."""
    _check_pair(mb, mc, branch, control, set_, source)
    d_all = (1.0 if hib else -1.0) * (mb.y - mc.y)
    d, fold, keep = _kept(mb, d_all)
    s, n = d.shape
    orient = (f"{branch} - {control}" if hib else f"{control} - {branch}") + \
        f" (positive = {branch} better)"
    out = {"branch": branch, "control": control, "set": set_, "metric": metric, "diff": None,
           "orientation": orient, "ci": None, "ci_boot": None, "p": None, "se": None,
           "df": None, "design": "none", "var_seed": None, "var_person": None,
           "effect_size": None, "effect": EFFECT, "test": "", "n_seeds": s, "n_persons": n,
           "n_folds": max(1, len(set(fold.tolist()))), "n_persons_dropped": int((~keep).sum()),
           "higher_is_better": hib, "note": "", "_design": None}  # fmt: skip
    if n == 0:
        out["note"] = f"{metric} is undefined for every person in some seed: nothing to pair"
        return out
    r = _core.design(d, fold)
    out.update(diff=float(r.mean[0]), design=r.kind, test=DESIGN_WORDS[r.kind], _design=r)
    dz = _core.cohen_dz(d[None])[0]
    out["effect_size"] = None if np.isnan(dz) else float(dz)
    if not np.isfinite(r.df[0]):
        out["note"] = ("one seed and one person: no variance, no interval, no test"
                       if r.kind == "none" else f"no variation: the difference is "
                       f"{float(r.mean[0]):g} for every person in every seed; no test")
        return out
    span = None if metric not in METRICS or not METRICS[metric].bounded else \
        METRICS[metric].high - METRICS[metric].low
    ci = bounded_interval(float(r.mean[0]), float(r.se[0]), float(r.df[0]), level,
                          None, None, DESIGN_WORDS[r.kind])  # fmt: skip
    if span is not None and (ci.low < -span or ci.high > span):
        ci = Interval(low=max(ci.low, -span), high=min(ci.high, span), level=level,
                      method=ci.method + f", clipped to the possible range +-{span:g}")
    out.update(ci=ci, se=float(r.se[0]), df=float(r.df[0]))
    if r.kind == "crossed":
        ms_a, ms_b, ms_e = float(r.ms_seed[0]), float(r.ms_person[0]), float(r.ms_res[0])
        out.update(var_seed=ms_a / (s * n), var_person=max(0.0, ms_b - ms_e) / (s * n))
        b = _core.bootstrap_means(d, n_boot, rng_for(seed, branch, control, set_, metric))[0]
        lo, hi = np.quantile(b, [(1 - level) / 2, (1 + level) / 2])
        out["ci_boot"] = Interval(low=float(lo), high=float(hi), level=level,
                                  method="two-way bootstrap over seeds and persons (percentile)")
    if s == 1:
        out["note"] = ("1 seed: the interval leaves out seed-to-seed variation, which a second "
                       "seed measures; without it no difference is claimed")
    elif r.kind == "seeds":
        out["note"] = ("1 person: the interval is over seeds only and says nothing of other "
                       "persons; no difference is claimed")
    else:
        out["p"] = float(_core.t_test(r.mean, r.se, r.df)[0])
    if out["effect_size"] is None and n < 3:
        out["note"] = (out["note"] + "; " if out["note"] else "") + "d_z needs 3 persons or more"
    return out
