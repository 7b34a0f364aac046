"""Calibration of the study statistics: coverage, false-positive rate and power by simulation.

    python bench/bench_stats.py            # K = 20000 studies per regime, ~1-2 min on a CPU
    python bench/bench_stats.py --quick    # K = 1000 (smoke run, a few seconds)

Each simulated study is a seeds x subjects matrix of paired differences (branch - control)
with a seed x branch component (sd_seed), a subject x branch component (sd_subj) and a
residual (sd_res), the model of docs/statistics.md. For each regime it prints the coverage
of the 95% intervals (Satterthwaite t = ``Comparison.ci``, hierarchical bootstrap =
``Comparison.ci_boot``), the rejection rate at p < 0.05 of the crossed t test (no effect:
false positives; planted effect: power), and, for contrast, of a Wilcoxon signed-rank test on
the seed-averaged subject differences (which ignores the seed component). The tests in
tests/test_stats.py check the same quantities with K = 400 and binomial tolerances; the
large-K numbers here are the ones quoted in docs/statistics.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as sps

from ada_core.stats import bootstrap_means, crossed, t_interval, t_test

REGIMES = [  # name, seeds, subjects, sd_seed, sd_subj, sd_res, true difference, folds
    ("seed-dominated", 2, 24, 1.0, 0.7, 2.0, 0.0, 1),
    ("seed-dominated", 3, 24, 1.0, 0.7, 2.0, 0.0, 1),
    ("seed-dominated", 5, 24, 1.0, 0.7, 2.0, 0.0, 1),
    ("seed-dominated", 10, 24, 1.0, 0.7, 2.0, 0.0, 1),
    ("subject-dominated", 3, 24, 0.1, 1.0, 1.5, 0.0, 1),
    ("no components", 3, 24, 0.0, 0.0, 2.0, 0.0, 1),
    ("3 folds (LOSO)", 3, 18, 0.5, 0.7, 1.5, 0.0, 3),
    ("1 seed, seed-dominated", 1, 24, 1.0, 0.7, 2.0, 0.0, 1),
    ("planted 1.0", 5, 24, 0.3, 0.7, 2.0, 1.0, 1),
    ("planted 1.0", 3, 24, 0.3, 0.7, 2.0, 1.0, 1),
]


def run(k: int, n_boot: int, rng: np.random.Generator) -> None:
    print(f"{'regime':<24}{'S':>3}{'N':>4}{'true':>6}  {'cov t':>6}{'cov boot':>9}"
          f"{'p<.05':>7}{'wilcoxon':>9}{'s':>6}")
    for name, s, n, sa, sb, se, mu, folds in REGIMES:
        t0 = time.perf_counter()
        fold = np.repeat(np.arange(folds), n // folds)
        hits = {"t": 0, "boot": 0, "rej": 0, "wil": 0}
        for start in range(0, k, 1000):
            m = min(1000, k - start)
            # each fold is its own trained model: its seed effects are its own
            d = (mu + sa * rng.standard_normal((m, s, folds))[:, :, fold]
                 + sb * rng.standard_normal((m, 1, n)) + se * rng.standard_normal((m, s, n)))
            r = crossed(d, fold)
            lo, hi = t_interval(r.mean, r.se, r.df)
            hits["t"] += int(((lo < mu) & (hi > mu)).sum())
            boot = bootstrap_means(d, fold, n_boot, rng)
            blo, bhi = np.quantile(boot, [0.025, 0.975], axis=1)
            hits["boot"] += int(((blo < mu) & (bhi > mu)).sum())
            hits["rej"] += int((t_test(r.mean, r.se, r.df) < 0.05).sum())
            hits["wil"] += int((sps.wilcoxon(d.mean(axis=1), axis=1).pvalue < 0.05).sum())
        print(f"{name:<24}{s:>3}{n:>4}{mu:>6.1f}  {hits['t'] / k:>6.3f}{hits['boot'] / k:>9.3f}"
              f"{hits['rej'] / k:>7.3f}{hits['wil'] / k:>9.3f}{time.perf_counter() - t0:>6.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="K = 1000 studies per regime")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    k = 1000 if a.quick else 20_000
    print(f"K = {k} simulated studies per regime; binomial SE of a 95% coverage "
          f"{np.sqrt(0.95 * 0.05 / k):.4f}, of a 5% rate {np.sqrt(0.05 * 0.95 / k):.4f}")
    run(k, 500 if a.quick else 1000, np.random.default_rng(a.seed))


if __name__ == "__main__":
    main()
