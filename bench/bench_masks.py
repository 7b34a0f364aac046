"""Throughput of the window mask builder against a vectorised numpy integral image.

    python bench/bench_masks.py            # ~30 s on a CPU
    python bench/bench_masks.py --quick    # a few seconds (CI)
    python bench/bench_masks.py --device cuda

build_mask at 200x200, Z=20, stride 1 (the paper's setting): the batched ``window_keep_mask``
against what a performance engineer writes in numpy in an afternoon (``numpy_keep_mask``: the
integral images of the outside saliency (float64) and of the ground truth, every window's
score and count by four slices, a masked argmax, the keep mask by broadcasting), in images
per second, timed alternately in the same run: once over the whole batch at once, and once in
blocks of 8 images (the cache blocking ``window_keep_mask`` does on the CPU, so that the
reference is not slower only for passing over 20 MB arrays). All are checked to give equal
masks on every image first, and the paper's per-image loop over every window on the first
ones. The surface-distance metrics have their own benchmark, bench_metrics.py.
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


def numpy_keep_mask(sal: np.ndarray, gt: np.ndarray, z: int) -> np.ndarray:
    """The restore policy for a ``(B, H, W)`` batch, vectorised numpy (integral images)."""
    b, h, w = sal.shape
    integral = np.zeros((b, h + 1, w + 1))
    outside = sal.astype(np.float64) * (1 - gt)  # float64 sums, as window_keep_mask
    np.cumsum(np.cumsum(outside, 1), 2, out=integral[:, 1:, 1:])
    counts = np.zeros((b, h + 1, w + 1), np.float32)
    np.cumsum(np.cumsum(gt, 1, dtype=np.float32), 2, out=counts[:, 1:, 1:])

    def windows(s: np.ndarray) -> np.ndarray:
        return s[:, z:, z:] - s[:, :-z, z:] - s[:, z:, :-z] + s[:, :-z, :-z]

    score = np.where(windows(counts) < z * z - 0.5, windows(integral), -np.inf).reshape(b, -1)
    r, c = np.divmod(score.argmax(1), w - z + 1)  # the first best window, row-major
    rows, cols = np.arange(h), np.arange(w)
    in_r = (rows >= r[:, None]) & (rows < r[:, None] + z)
    in_c = (cols >= c[:, None]) & (cols < c[:, None] + z)
    return (~(in_r[:, :, None] & in_c[:, None, :]) | (gt != 0)).astype(np.float32)


def numpy_blocks(sal: np.ndarray, gt: np.ndarray, z: int, block: int = 8) -> np.ndarray:
    """:func:`numpy_keep_mask` over blocks of ``block`` images (cache-sized arrays)."""
    return np.concatenate([numpy_keep_mask(sal[i : i + block], gt[i : i + block], z)
                           for i in range(0, len(sal), block)])  # fmt: skip


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
    parser.add_argument("--batch", type=int, default=None, help="images (default 64, --quick 16)")
    parser.add_argument("--reps", type=int, default=None, help="repeats (default 7, --quick 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch, n_paper, reps = (16, 1, 3) if args.quick else (64, 2, 7)
    batch, reps = args.batch or batch, args.reps or reps
    device = torch.device(args.device)
    h = w = 200
    z = 20
    sal, gt = make_batch(batch, h, w, device)
    keep = window_keep_mask(sal, gt, z).cpu().numpy()
    s_np, g_np = sal.cpu().double().numpy()[:, 0], gt.cpu().numpy()[:, 0]
    s32 = sal.cpu().numpy()[:, 0]
    if not np.array_equal(numpy_keep_mask(s32, g_np, z), keep[:, 0]):
        raise SystemExit("numpy and torch masks differ")
    for i in range(n_paper):
        if not np.array_equal(naive_build_mask(s_np[i], g_np[i], z), keep[i, 0]):
            raise SystemExit(f"the paper's loop and the batched masks differ on image {i}")

    if not np.array_equal(numpy_blocks(s32, g_np, z), keep[:, 0]):
        raise SystemExit("numpy in blocks and torch masks differ")
    records = []
    for case, ref in (("whole batch", numpy_keep_mask), ("blocks of 8", numpy_blocks)):
        rec = compare(lambda: window_keep_mask(sal, gt, z), batch,
                      lambda: ref(s32, g_np, z), batch, reps, device)  # fmt: skip
        records.append({"bench": "masks", "case": f"numpy {case}", "shape": f"200x200 Z={z}",
                        "device": str(device), "threads": torch.get_num_threads(),
                        "batch": batch, **rec})  # fmt: skip
    print(f"window_keep_mask vs a vectorised numpy integral image, images/s ({device}, batch "
          f"{batch}, build_mask 200x200 Z={z}; masks equal on all {batch}):")  # fmt: skip
    report(records, "img/s")


if __name__ == "__main__":
    main()
