"""Throughput of the batched augmentation against a per-sample numpy/scipy reference.

    python bench/bench_augment.py           # 200 x 200, batch 64 (paper size), ~30 s on CPU
    python bench/bench_augment.py --quick   # a few seconds
    python bench/bench_augment.py --device cuda

The reference does what a Keras ImageDataGenerator-style pipeline does: for each sample, draw
parameters, smooth an elastic field with scipy, and resample image and mask with
``scipy.ndimage.map_coordinates``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy import ndimage

from ada_core.augment import AugmentConfig, Augmenter


def naive(images: np.ndarray, masks: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator):
    out_i, out_m = np.empty_like(images), np.empty_like(masks)
    n, _, h, w = images.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for k in range(n):  # the per-sample Python loop the engine avoids
        a = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
        s = rng.uniform(*cfg.scale)
        tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
        dx = (
            ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), cfg.elastic_sigma, mode="mirror")
            * cfg.elastic_alpha
        )
        dy = (
            ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), cfg.elastic_sigma, mode="mirror")
            * cfg.elastic_alpha
        )
        px, py = xx - cx + dx - tx, yy - cy + dy - ty
        cols = (math.cos(a) * px + math.sin(a) * py) / s + cx
        rows = (-math.sin(a) * px + math.cos(a) * py) / s + cy
        out_i[k, 0] = ndimage.map_coordinates(images[k, 0], [rows, cols], order=1, mode="nearest")
        out_i[k, 0] += rng.uniform(-cfg.channel_shift, cfg.channel_shift)
        out_m[k, 0] = (
            ndimage.map_coordinates(masks[k, 0], [rows, cols], order=1, mode="nearest") >= 0.5
        )
    return out_i, out_m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fair vs scipy)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size, batch, reps = (64, 16, 3) if args.quick else (args.size, args.batch, 10)
    dev = torch.device(args.device)
    cfg = AugmentConfig(p_elastic=1.0)  # every transform on: the worst case
    images = torch.randn(batch, 1, size, size, device=dev)
    masks = (torch.rand(batch, 1, size, size, device=dev) > 0.9).float()
    aug = Augmenter(cfg, torch.Generator(device=dev).manual_seed(0))
    aug(images, masks)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        aug(images, masks)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    fast = reps * batch / (time.perf_counter() - t)
    ni, nm = images.cpu().numpy(), masks.cpu().numpy()
    rng = np.random.default_rng(0)
    n_reps = max(1, reps // 3)
    t = time.perf_counter()
    for _ in range(n_reps):
        naive(ni, nm, cfg, rng)
    slow = n_reps * batch / (time.perf_counter() - t)
    print(f"augment {size}x{size}, batch {batch}, device {dev}, torch threads {args.threads}")
    print(f"  batched (ada_core.augment): {fast:10.1f} images/s")
    print(f"  per-sample scipy reference: {slow:10.1f} images/s")
    print(f"  ratio: {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
