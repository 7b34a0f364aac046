"""Calibration of the study statistics by simulation, at the levels where the verdict decides.

    python bench/bench_stats.py            # K = 20000 studies per regime (~5 min on 2 cores)
    python bench/bench_stats.py --quick    # K = 2000 (smoke run)

Each simulated study is a whole family under the global null: 5 methods and 2 controls, each a
trained branch per seed, scored on 3 sets, so 30 method-control comparisons share their
controls and their seeds' luck as in a real study. A branch's person mean is::

    y[b, set, s, j] = a[b, s] + a'[b, set, s] + u[b, set, j] + e[b, set, s, j]

(seed x branch luck shared by the sets, set-specific luck, person x branch, residual). The
comparisons run through the production core (``ada_core.stats.design`` and ``t_test``, what
``study_statistics`` calls per comparison) and Holm (``ada_core.stats.holm``). Printed per
regime: coverage of the 95% interval, P(p < alpha) at 0.05, 0.01, 0.05/30 and 0.05/100 (over
all 30 x K comparisons), and the family-wise error of Holm's correction over the 30. Targets:
coverage >= 0.94, P(p < alpha) <= 1.5 alpha, family-wise error <= 0.05.

Regimes: seed-dominated, person-dominated, no seed component (where the old estimator dropped
the seed term), raters and sessions of one person (subjects averaged within the person; the
old per-subject analysis shown for contrast), and leave-one-site-out folds (one person per
fold, folds of 1, 1 and 2 persons, 4 folds of 6 with a site x branch effect). The omnibus F
test of the method effect is checked on the same studies (5 methods, one set). The same
simulation at small K runs in tests/test_calibration.py through ``study_statistics`` itself.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from ada_core.stats import design, holm, method_effect, t_interval, t_test

ALPHAS = (0.05, 0.01, 0.05 / 30, 0.05 / 100)
M, C, SETS = 5, 2, 3


@dataclass(frozen=True)
class Regime:
    name: str
    seeds: int
    persons: tuple[int, ...]  # persons per fold
    sd_seed: float  # seed x branch
    sd_person: float  # person x branch
    sd_res: float
    scans: int = 1  # raters or sessions per person (averaged within the person)
    sd_scan: float = 0.0  # scan-within-person x branch
    sd_site: float = 0.0  # fold (site) x branch

    @property
    def label(self) -> str:
        folds = "" if len(self.persons) == 1 else f" folds {'/'.join(map(str, self.persons))}"
        scans = f" x {self.scans} scans" if self.scans > 1 else ""
        return f"{self.name}{folds}{scans}"


REGIMES = [
    *(Regime("seed-dominated", s, (24,), 1.0, 0.7, 2.0) for s in (3, 5, 10)),
    *(Regime("person-dominated", s, (24,), 0.1, 1.5, 1.5) for s in (3, 5, 10)),
    *(Regime("no seed component", s, (24,), 0.0, 0.7, 2.0) for s in (3, 5)),
    Regime("raters", 3, (8,), 0.5, 0.7, 1.0, scans=4, sd_scan=1.0),
    Regime("sessions", 3, (12,), 0.5, 0.7, 1.0, scans=2, sd_scan=1.0),
    Regime("one-person folds", 3, (1, 1, 1), 0.5, 1.0, 1.0, sd_site=0.5),
    Regime("one-person folds", 5, (1, 1, 1), 0.5, 1.0, 1.0, sd_site=0.5),
    Regime("uneven folds", 3, (1, 1, 2), 0.5, 1.0, 1.0, sd_site=0.5),
    Regime("site effect", 3, (6, 6, 6, 6), 0.5, 0.7, 1.0, sd_site=0.5),
]


def simulate(r: Regime, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Person means ``(K, B, SETS, S, N)`` of B = M + C branches under the null, and the
    per-scan values ``(K, B, SETS, S, N, scans)`` they average (for the per-scan contrast)."""
    b, s = M + C, r.seeds
    fold = np.repeat(np.arange(len(r.persons)), r.persons)
    n = fold.size
    seed = r.sd_seed * rng.standard_normal((k, b, 1, s, len(r.persons)))[..., fold]
    seed = seed + 0.5 * r.sd_seed * rng.standard_normal((k, b, SETS, s, len(r.persons)))[..., fold]
    site = r.sd_site * rng.standard_normal((k, b, SETS, 1, len(r.persons)))[..., fold]
    person = r.sd_person * rng.standard_normal((k, b, SETS, 1, n))
    scan = r.sd_scan * rng.standard_normal((k, b, SETS, 1, n, r.scans))
    res = r.sd_res * rng.standard_normal((k, b, SETS, s, n, r.scans))
    scans = (seed + site + person)[..., None] + scan + res
    return scans.mean(-1), scans


def _fold(r: Regime) -> np.ndarray:
    return np.repeat(np.arange(len(r.persons)), r.persons)


def calibrate(r: Regime, k: int, rng: np.random.Generator, chunk: int) -> dict[str, float]:
    fold = _fold(r)
    hits = np.zeros(len(ALPHAS))
    cover = total = fwer = omni = naive = 0.0
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        y, scans = simulate(r, m, rng)
        ps = []
        for st in range(SETS):
            for i in range(M):
                for c in range(M, M + C):
                    d = design(y[:, i, st] - y[:, c, st], fold)
                    lo, hi = t_interval(d.mean, d.se, d.df)
                    cover += float(((lo < 0) & (hi > 0)).sum())
                    ps.append(t_test(d.mean, d.se, d.df))
        p = np.stack(ps, axis=1)  # (m, 30)
        total += p.size
        hits += [(p < a).sum() for a in ALPHAS]
        fwer += float((holm(p) < 0.05).any(axis=1).sum())
        omni += float((method_effect(y[:, :M, 0], fold).p < 0.05).sum())
        if r.scans > 1:  # the old analysis: every scan a subject of its own
            flat = scans[:, 0, 0] - scans[:, M, 0]  # (m, S, N, scans)
            flat = flat.reshape(m, r.seeds, -1)
            naive += float((t_test(*_mse(design(flat))) < 0.05).sum())
    out = {"coverage": cover / total, "fwer": fwer / k, "omnibus": omni / k,
           **{f"p<{a:.3g}": h / total for a, h in zip(ALPHAS, hits, strict=True)}}  # fmt: skip
    if r.scans > 1:
        out["per-scan p<.05"] = naive / k
    return out


def _mse(d):  # noqa: ANN001, ANN202
    return d.mean, d.se, d.df


def table(k: int, seed: int, chunk: int) -> list[tuple[Regime, dict[str, float]]]:
    rng = np.random.default_rng(seed)
    return [(r, calibrate(r, k, rng, chunk)) for r in REGIMES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 2000 studies per regime")
    parser.add_argument("--k", type=int, default=None, help="studies per regime")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k = args.k or (2000 if args.quick else 20000)
    t0 = time.perf_counter()
    head = (f"{'regime':<34}{'S':>3}{'N':>4}{'cover':>7}" + "".join(f"{'p<' + f'{a:.2g}':>10}"
            for a in ALPHAS) + f"{'FWER30':>8}{'omnibus':>9}")  # fmt: skip
    print(f"K = {k} studies per regime, 30 comparisons each (5 methods x 2 controls x 3 sets)")
    print(head)
    for r, res in table(k, args.seed, 2000):
        rates = "".join(f"{res[f'p<{a:.3g}']:>10.5f}" for a in ALPHAS)
        line = (f"{r.label:<34}{r.seeds:>3}{sum(r.persons):>4}{res['coverage']:>7.3f}{rates}"
                f"{res['fwer']:>8.3f}{res['omnibus']:>9.3f}")  # fmt: skip
        if "per-scan p<.05" in res:
            line += f"   (per-scan analysis: p<.05 {res['per-scan p<.05']:.3f})"
        print(line, flush=True)
    print(f"nominal:{'':<36}" + "".join(f"{a:>10.5f}" for a in ALPHAS)
          + f"{0.05:>8.3f}{0.05:>9.3f}")  # fmt: skip
    print(f"targets: coverage >= 0.94, P(p < alpha) <= 1.5 alpha, FWER <= 0.05; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
