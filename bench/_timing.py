"""Shared timing for the benchmarks: interleaved repeats, ratios, JSON lines and a table.

Absolute timings on a shared machine are noisy, so every benchmark times its fast path and
its naive reference in the same run, alternating them, and reports the median of the
per-repeat ratios (with the spread) rather than one throughput against a number from
another day.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from ada_core._allocator import keep_freed_memory

# Every bench runs with the allocator settings the engine uses (both sides of each ratio in
# one process, so each ratio is fair either way); ADA_MALLOC=default measures glibc's own.
MALLOC = keep_freed_memory()


def sync(device: torch.device) -> None:
    """Wait for queued kernels (CUDA launches are asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def compare(
    fast: Callable[[], object],
    fast_items: int,
    ref: Callable[[], object],
    ref_items: int,
    reps: int,
    device: torch.device,
) -> dict[str, float]:
    """Throughputs (items/s) of ``fast`` and ``ref`` measured alternately, and their ratio.

    Each callable runs once untimed first (warm-up), then ``reps`` times each, alternating.

    Returns:
        ``fast_per_s`` and ``ref_per_s`` (medians), ``ratio`` (median of the per-repeat
        ratios), ``ratio_min``, ``ratio_max`` and ``reps``.
    """
    fast()
    ref()
    sync(device)
    f_rates, r_rates, ratios = [], [], []
    for _ in range(reps):
        f = fast_items / _seconds(fast, device)
        r = ref_items / _seconds(ref, device)
        f_rates.append(f)
        r_rates.append(r)
        ratios.append(f / r)
    return {
        "fast_per_s": round(statistics.median(f_rates), 2),
        "ref_per_s": round(statistics.median(r_rates), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "reps": reps,
    }


def report(records: list[dict], unit: str) -> None:
    """Print one JSON line per record, then a short table of the ratios."""
    print(f"# malloc thresholds: {MALLOC}")
    for rec in records:
        print(json.dumps(rec))
    print(f"{'case':<28} {'fast ' + unit:>14} {'naive ' + unit:>14} {'ratio (min-max)':>20}")
    for rec in records:
        spread = f"{rec['ratio']:.2f}x ({rec['ratio_min']:.2f}-{rec['ratio_max']:.2f})"
        print(
            f"{rec['case']:<28} {rec['fast_per_s']:>14.1f} {rec['ref_per_s']:>14.1f} {spread:>20}"
        )


def cpu_args(doc: str | None, quick: str) -> argparse.Namespace:
    """The arguments every CPU bench takes (``--quick``, ``--threads``, default one thread);
    torch's thread count is set from them."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args
