"""The positive control's true effect, by brute force over many seeds (run once; minutes).

    python bench/bench_positive_control.py                    # seeds 0-9, cue on and off
    python bench/bench_positive_control.py --seeds 0-19 --out runs/bench-pc

Runs configs/positive-control.toml (the planted cue) and configs/positive-control-null.toml
(the same with ``data.params.context_cue = false``), every seed in one study each.
Per seed it takes each branch's DSC on the unseen persons without the cue (``unseen_no_cue``):
the mean over persons of each person's mean over slices, read from ``results.csv``. The effect
of a comparison is the per-seed difference (e.g. oracle minus random), summarised by its mean
over seeds and a 95% t-interval over seeds (scipy): the seed is the unit that replicates a
study. The verdict's own statistics are not used, so this is an independent measurement of
what the verdict should find. The same is printed for the real attributor (gradcam).

It prints one JSON object per line (one per condition and comparison, with every per-seed
difference), then a table. Run folders are kept under ``--out``; a second call with the same
seeds reuses the finished jobs (``resume``).

``--per-set S`` also measures the verdict end to end: the seeds are cut into disjoint sets of
S (seeds 0-49 with S = 5: ten seed sets), and each set gets the statistics and verdict the
shipped study would print had it listed those seeds (``aggregate.reanalyse``: a job is one
seed of one branch and does not depend on the other seeds listed, so this equals running
``ada compare`` once per seed set). Planted: the verdict finds the effect when, in the primary
family, the oracle beats every control (positive difference, significant after the study's
Holm correction) and the first sentence says so. Null: a claim is any significant primary
comparison or a significant omnibus F. Rates come with Clopper-Pearson 95% intervals
(scipy.stats.binomtest).

    python bench/bench_positive_control.py --seeds 0-49 --per-set 5      # the shipped study
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from scipy import stats

import ada_core

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SET = "unseen_no_cue"
COMPARISONS = [("oracle", "random"), ("oracle", "none"), ("gradcam", "random"), ("gradcam", "none")]
CONDITIONS = {"planted": "positive-control.toml", "null": "positive-control-null.toml"}


def seed_list(text: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` -> the seeds."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def subject_means(results: Path, set_name: str) -> dict[tuple[int, str], float]:
    """``(seed, branch) -> mean over persons of the person's mean DSC`` on ``set_name``."""
    import pandas as pd

    d = pd.read_csv(results)
    d = d[d["set"] == set_name]
    per_person = d.groupby(["seed", "branch", "person"])["dsc"].mean()
    return {k: float(v) for k, v in per_person.groupby(level=["seed", "branch"]).mean().items()}


def summarise(diffs: list[float]) -> dict[str, float]:
    """Mean, standard deviation and 95% t-interval over seeds."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if n > 1 else math.nan
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"n_seeds": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def run_condition(name: str, seeds: list[int], out: Path) -> tuple[Path, float]:
    sets = [f"name=positive-control-{name}", f"output={out}", f"train.seeds={seeds}"]
    start = time.perf_counter()
    result = ada_core.run(CONFIGS / CONDITIONS[name], sets, quiet=True, report=False, resume=True)
    if not result.ok:
        raise SystemExit(f"{name}: jobs failed: {result.failed}")
    return result.run_dir / "results.csv", time.perf_counter() - start


def verdict_outcomes(run_dir: Path, seeds: list[int], per_set: int) -> list[dict]:
    """Per disjoint seed set: what the study's own verdict decides (see the module docstring)."""
    from ada_core.engine.aggregate import reanalyse

    out = []
    for i in range(len(seeds) // per_set):
        block = seeds[i * per_set:(i + 1) * per_set]
        st, said = reanalyse(run_dir, block)
        primary = st.family("primary") if st is not None else []
        oracle = [c for c in primary if c.branch == "oracle"]
        found = bool(oracle) and all(c.significant and c.diff > 0 for c in oracle)
        first = said.opening[0]
        named = first.count("oracle beats ") == len(oracle)  # one clause per control
        claims = [f"{c.branch} - {c.control}" for c in primary if c.significant]
        omni = st.omnibus if st is not None else None
        out.append({"seeds": block, "found": found and named, "claims": claims,
                    "omnibus_p": None if omni is None else omni.p,
                    "omnibus_significant": bool(omni is not None and omni.significant),
                    "oracle": {c.control: {"diff": c.diff, "p_holm": c.p_holm} for c in oracle},
                    "first_sentence": first})  # fmt: skip
    return out


def rate(k: int, n: int) -> str:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} = {k / n:.0%} (95% CI {ci.low:.0%} to {ci.high:.0%})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9", help="seeds, e.g. 0-9 or 0,2,4 (default 0-9)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-positive-control"))
    ap.add_argument("--conditions", default="planted,null", help="planted, null or both")
    ap.add_argument("--per-set", type=int, default=0,
                    help="also score the verdict of disjoint seed sets of this size (0: no)")
    args = ap.parse_args()
    seeds = seed_list(args.seeds)
    rows, verdicts = [], {}
    for cond in args.conditions.split(","):
        results, seconds = run_condition(cond, seeds, args.out)
        if args.per_set:
            verdicts[cond] = verdict_outcomes(results.parent, seeds, args.per_set)
            for v in verdicts[cond]:
                print(json.dumps({"condition": cond, **v}))
        means = subject_means(results, SET)
        for branch in sorted({b for _, b in means}):
            vals = [means[(s, branch)] for s in seeds]
            print(json.dumps({"condition": cond, "branch": branch, "set": SET,
                              "dsc_per_seed": vals, **summarise(vals)}))  # fmt: skip
        for a, b in COMPARISONS:
            diffs = [means[(s, a)] - means[(s, b)] for s in seeds]
            row = {"condition": cond, "comparison": f"{a} - {b}", "set": SET,
                   "seconds": round(seconds, 1), **summarise(diffs), "per_seed": diffs}  # fmt: skip
            rows.append(row)
            print(json.dumps(row))
    print(f"\n{SET} DSC points, per-seed differences: mean [95% t-interval over seeds], sd")
    print(f"{'condition':<9} {'comparison':<18} {'n':>3} {'mean':>7} {'95% CI':>17} {'sd':>6} {'> 0':>5}")
    for r in rows:
        ci = f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
        pos = sum(d > 0 for d in r["per_seed"])
        print(f"{r['condition']:<9} {r['comparison']:<18} {r['n_seeds']:>3} {r['mean']:>+7.1f} "
              f"{ci:>17} {r['sd']:>6.1f} {pos:>2}/{r['n_seeds']:<2}")  # fmt: skip
    for cond in dict.fromkeys(r["condition"] for r in rows):
        secs = next(r["seconds"] for r in rows if r["condition"] == cond)
        print(f"{cond}: {len(seeds)} seeds in {secs:.0f} s")
    for cond, vs in verdicts.items():
        n = len(vs)
        if cond == "planted":
            print(f"planted: the verdict finds the effect in {rate(sum(v['found'] for v in vs), n)}"
                  f" of {n} disjoint sets of {args.per_set} seeds")  # fmt: skip
        else:
            prim = sum(bool(v["claims"]) for v in vs)
            anyc = sum(bool(v["claims"]) or v["omnibus_significant"] for v in vs)
            print(f"null: a primary claim in {rate(prim, n)}; any claim (primary or omnibus) in "
                  f"{rate(anyc, n)} of {n} disjoint sets of {args.per_set} seeds")  # fmt: skip


if __name__ == "__main__":
    main()
