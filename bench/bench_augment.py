"""Throughput of the batched augmentation against a per-sample numpy/scipy reference.

    python bench/bench_augment.py           # 200 x 200, batch 64 (paper size), ~30 s on CPU
    python bench/bench_augment.py --quick   # 200 x 200, batch 16, a few seconds (CI)
    python bench/bench_augment.py --device cuda

The reference does what a Keras ImageDataGenerator-style pipeline does: for each sample, draw
parameters, smooth an elastic field with scipy, and resample image and mask with
``scipy.ndimage.map_coordinates`` (order 1). Every transform is on (``p_elastic=1``: the worst
case). Before timing, one batch's sampled parameters are replayed through the scipy warp and
the images compared (bilinear interpolation, 1e-3 tolerance), so both sides do the same work.
Both are timed alternately in the same run; torch runs on one thread unless ``--threads``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from _timing import compare, report
from scipy import ndimage

from ada_core.augment import AugmentConfig, Augmenter


def warp(image: np.ndarray, mask: np.ndarray, a, s, tx, ty, dx, dy, shift):
    """One sample: elastic field, then the inverse affine map, bilinear with edge padding."""
    h, w = image.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    px, py = xx - cx + dx - tx, yy - cy + dy - ty
    cols = (math.cos(a) * px + math.sin(a) * py) / s + cx
    rows = (-math.sin(a) * px + math.cos(a) * py) / s + cy
    out = ndimage.map_coordinates(image, [rows, cols], order=1, mode="nearest") + shift
    soft = ndimage.map_coordinates(mask, [rows, cols], order=1, mode="nearest")
    return out, soft >= 0.5


def naive(images: np.ndarray, masks: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator):
    out_i, out_m = np.empty_like(images), np.empty_like(masks)
    n, _, h, w = images.shape
    for k in range(n):  # the per-sample Python loop the engine avoids
        a = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
        s = rng.uniform(*cfg.scale)
        tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
        dx, dy = (
            ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), cfg.elastic_sigma, mode="mirror")
            * cfg.elastic_alpha
            for _ in range(2)
        )
        shift = rng.uniform(-cfg.channel_shift, cfg.channel_shift)
        out_i[k, 0], out_m[k, 0] = warp(images[k, 0], masks[k, 0], a, s, tx, ty, dx, dy, shift)
    return out_i, out_m


def check_same_transform(aug: Augmenter, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Largest image difference between the batched path and scipy on the same parameters."""
    out, _ = aug(images, masks)
    p = aug.last_params.to("cpu")
    worst = 0.0
    h, w = images.shape[-2:]
    for k in range(min(4, images.shape[0])):
        disp = p.displacement[k].double().numpy()
        ref, _ = warp(
            images[k, 0].cpu().double().numpy(),
            masks[k, 0].cpu().double().numpy(),
            float(p.angle[k]),
            float(p.scale[k]),
            float(p.shift[k, 0]) * w,
            float(p.shift[k, 1]) * h,
            disp[0],
            disp[1],
            float(p.intensity[k]),
        )
        worst = max(worst, float(np.abs(out[k, 0].cpu().double().numpy() - ref).max()))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fair vs scipy)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size, batch, reps = (args.size, 16, 3) if args.quick else (args.size, args.batch, 7)
    dev = torch.device(args.device)
    cfg = AugmentConfig(p_elastic=1.0)  # every transform on: the worst case
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 1, size, size, generator=gen).to(dev)
    masks = (torch.rand(batch, 1, size, size, generator=gen) > 0.9).float().to(dev)
    aug = Augmenter(cfg, torch.Generator(device=dev).manual_seed(0), keep_params=True)
    worst = check_same_transform(aug, images, masks)
    if worst > 1e-3:
        raise SystemExit(f"batched and scipy warps differ by {worst:.2e} on the same parameters")
    ni, nm = images.cpu().numpy(), masks.cpu().numpy()
    rng = np.random.default_rng(0)
    rec = compare(
        lambda: aug(images, masks), batch, lambda: naive(ni, nm, cfg, rng), batch, reps, dev
    )
    record = {
        "bench": "augment",
        "case": f"augment {size}x{size} all on",
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "max_diff_vs_scipy_same_params": float(f"{worst:.2e}"),
        **rec,
    }
    print(f"Augmenter vs per-sample scipy, images/s ({dev}, batch {batch}):")
    report([record], "img/s")


if __name__ == "__main__":
    main()
