"""Throughput of the window mask builder and the surface-distance metrics vs naive references.

    python bench/bench_masks.py            # ~30-60 s on a CPU
    python bench/bench_masks.py --quick    # a few seconds (smoke run)
    python bench/bench_masks.py --device cuda

1. build_mask at 200x200, Z=20, stride 1 (the paper's setting): the batched
   ``window_keep_mask`` against the naive per-image loop over every window (as the paper's
   build_mask does), in images per second, and their ratio. The naive masks are checked
   against the batched ones.
2. HSD + HD95 per slice: batched ``segmentation_metrics`` against a per-slice scipy loop
   (binary erosion + exact distance transform, medpy style), in slices per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from ada_core.masks import window_keep_mask
from ada_core.metrics import segmentation_metrics


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


def scipy_surface(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[float, float]:
    st = ndimage.generate_binary_structure(2, 1)
    pb = pred ^ ndimage.binary_erosion(pred, st)
    tb = target ^ ndimage.binary_erosion(target, st)
    d_pt = ndimage.distance_transform_edt(~tb, sampling=spacing)[pb]
    d_tp = ndimage.distance_transform_edt(~pb, sampling=spacing)[tb]
    both = np.hstack([d_pt, d_tp])
    return float(both.max()), float(np.percentile(both, 95))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, min_time: float) -> float:
    """Seconds per call, repeating until ``min_time`` has passed (after one warm-up call)."""
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n


def make_batch(b: int, h: int, w: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sal = torch.rand(b, 1, h, w, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    gt = ((yy - h / 2) ** 2 / (h / 8) ** 2 + (xx - w / 2) ** 2 / (w / 6) ** 2 < 1).float()
    return sal.to(device), gt.expand(b, 1, h, w).contiguous().to(device)


def bench_masks(args, device: torch.device) -> None:
    h = w = 200
    z = 20
    sal, gt = make_batch(args.batch, h, w, device)
    per_call = timed(lambda: window_keep_mask(sal, gt, z), device, args.min_time)
    fast = args.batch / per_call
    keep = window_keep_mask(sal, gt, z).cpu().numpy()
    n_naive = args.naive_images
    s_np, g_np = sal.cpu().double().numpy(), gt.cpu().numpy()
    start = time.perf_counter()
    for i in range(n_naive):
        ref = naive_build_mask(s_np[i, 0], g_np[i, 0], z)
        if not np.array_equal(ref, keep[i, 0]):
            raise SystemExit(f"naive and batched masks differ on image {i}")
    naive = n_naive / (time.perf_counter() - start)
    print(f"build_mask 200x200 Z=20 stride 1 ({device}, batch {args.batch}):")
    print(f"  batched window_keep_mask: {fast:12.1f} images/s")
    print(f"  naive loop over windows : {naive:12.2f} images/s  ({n_naive} images, masks equal)")
    print(f"  ratio                   : {fast / naive:12.0f}x")


def metric_masks(kind: str, b: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``gm``: a butterfly-sized ring near the centre, prediction shifted by up to 3 px;
    ``noisy``: thresholded smooth noise, ~1,200 boundary pixels per slice (a bad early model)."""
    gen = np.random.default_rng(0)
    if kind == "gm":
        yy, xx = np.mgrid[:h, :w]
        target, pred = [], []
        for _ in range(b):
            cy, cx = h // 2 + gen.integers(-5, 5), w // 2 + gen.integers(-5, 5)
            outer = (yy - cy) ** 2 / 12**2 + (xx - cx) ** 2 / 25**2 < 1
            t = outer & ~((yy - cy) ** 2 / 5**2 + (xx - cx) ** 2 / 8**2 < 1)
            target.append(t)
            pred.append(np.roll(t, tuple(gen.integers(-3, 4, size=2)), (0, 1)))
        return np.stack(pred), np.stack(target)
    target = np.stack([ndimage.gaussian_filter(gen.random((h, w)), 6) for _ in range(b)])
    target = target > np.quantile(target, 0.9, axis=(1, 2), keepdims=True)
    pred = np.stack(
        [ndimage.binary_dilation(t, iterations=1 + i % 3) for i, t in enumerate(target)]
    )
    return pred, target


def bench_metrics(args, device: torch.device, kind: str) -> None:
    b, h, w = args.batch, 200, 200
    pred, target = metric_masks(kind, b, h, w)
    spacing = (0.5, 0.5)
    p = torch.from_numpy(pred)[:, None].to(device)
    t = torch.from_numpy(target)[:, None].to(device)
    per_call = timed(lambda: segmentation_metrics(p, t, spacing), device, args.min_time)
    fast = b / per_call
    got = segmentation_metrics(p, t, spacing)
    n_ref = min(b, args.naive_images * 8)
    start = time.perf_counter()
    for i in range(n_ref):
        hsd, hd95 = scipy_surface(pred[i], target[i], spacing)
        if abs(hsd - got["hsd"][i].item()) > 1e-6 or abs(hd95 - got["hd95"][i].item()) > 1e-6:
            raise SystemExit(f"scipy and batched distances differ on slice {i}")
    ref = n_ref / (time.perf_counter() - start)
    print(f"HSD + HD95 (+ DSC/TPR/TNR/PPV) 200x200, {kind} masks ({device}, batch {b}):")
    print(f"  batched segmentation_metrics: {fast:10.1f} slices/s")
    print(f"  per-slice scipy loop        : {ref:10.1f} slices/s (distances only, equal)")
    print(f"  ratio                       : {fast / ref:10.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.batch = 16 if args.quick else 64
    args.naive_images = 1 if args.quick else 4
    args.min_time = 0.5 if args.quick else 3.0
    device = torch.device(args.device)
    bench_masks(args, device)
    bench_metrics(args, device, "gm")
    bench_metrics(args, device, "noisy")


if __name__ == "__main__":
    main()
