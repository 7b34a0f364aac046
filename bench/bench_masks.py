"""Throughput of the window mask builder against the paper's per-image loop.

    python bench/bench_masks.py            # ~30 s on a CPU
    python bench/bench_masks.py --quick    # a few seconds (CI)
    python bench/bench_masks.py --device cuda

build_mask at 200x200, Z=20, stride 1 (the paper's setting): the batched ``window_keep_mask``
against the naive per-image loop over every window (as the paper's build_mask does), in images
per second, timed alternately in the same run; the naive masks are checked equal to the batched
ones first. The surface-distance metrics have their own benchmark, bench_metrics.py.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import compare, report

from ada_core.masks import window_keep_mask


def naive_build_mask(sal: np.ndarray, gt: np.ndarray, z: int) -> np.ndarray:
    """The paper's build_mask: a Python loop over every window of one image (restore policy)."""
    h, w = sal.shape
    outside = sal * (1 - gt)
    best, best_rc = -np.inf, (0, 0)
    for r in range(h - z + 1):
        for c in range(w - z + 1):
            if gt[r : r + z, c : c + z].all():
                continue
            s = outside[r : r + z, c : c + z].sum()
            if s > best:
                best, best_rc = s, (r, c)
    keep = np.ones_like(sal, dtype=np.float32)
    keep[best_rc[0] : best_rc[0] + z, best_rc[1] : best_rc[1] + z] = 0
    keep[gt == 1] = 1
    return keep


def make_batch(b: int, h: int, w: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sal = torch.rand(b, 1, h, w, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    gt = ((yy - h / 2) ** 2 / (h / 8) ** 2 + (xx - w / 2) ** 2 / (w / 6) ** 2 < 1).float()
    return sal.to(device), gt.expand(b, 1, h, w).contiguous().to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run (CI)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch, n_naive, reps = (16, 1, 2) if args.quick else (64, 2, 3)
    device = torch.device(args.device)
    h = w = 200
    z = 20
    sal, gt = make_batch(batch, h, w, device)
    keep = window_keep_mask(sal, gt, z).cpu().numpy()
    s_np, g_np = sal.cpu().double().numpy(), gt.cpu().numpy()
    for i in range(n_naive):
        if not np.array_equal(naive_build_mask(s_np[i, 0], g_np[i, 0], z), keep[i, 0]):
            raise SystemExit(f"naive and batched masks differ on image {i}")

    def naive() -> None:
        for i in range(n_naive):
            naive_build_mask(s_np[i, 0], g_np[i, 0], z)

    rec = compare(lambda: window_keep_mask(sal, gt, z), batch, naive, n_naive, reps, device)
    record = {
        "bench": "masks",
        "case": f"build_mask 200x200 Z={z}",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": batch,
        **rec,
    }
    print(f"window_keep_mask vs the paper's per-image loop, images/s ({device}, batch {batch}):")
    report([record], "img/s")


if __name__ == "__main__":
    main()
