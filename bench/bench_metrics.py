"""Throughput of segmentation_metrics (DSC ... HD95) against a per-slice scipy loop.

    python bench/bench_metrics.py            # 200 x 200, batch 64, ~1 min on 1 CPU thread
    python bench/bench_metrics.py --quick    # batch 16, a few seconds (CI)
    python bench/bench_metrics.py --device cuda

The reference is what medpy-style code does for each slice: binary erosion, two exact
Euclidean distance transforms (``scipy.ndimage.distance_transform_edt`` with the spacing) and
the percentile; it computes the distances only, the batched call also DSC, TPR, TNR and PPV.
A second reference is MONAI's CPU method: the boundary pixels' coordinates in mm and a KD-tree
(``scipy.spatial.cKDTree``) of each boundary queried with the other's, per slice (2-D cases).
Every slice's HSD and HD95 are checked equal to both (1e-9 mm) before anything is timed.
Masks are float32, as the engine passes them.

Cases (all 200 x 200, spacing 0.5 mm):

- ``gm``: a grey-matter-sized ring, the prediction shifted by up to 3 px (a good model);
- ``gm+stray``: the same with 1-4 stray predicted pixels anywhere in the image (the case
  that defeated the old bounding-box crop);
- ``noisy``: thresholded smooth noise, ~1,200 boundary pixels per slice, the prediction
  dilated by 1-3 px (a bad early model);
- ``scatter->gm``: an early model's prediction, noisy blobs over the whole image, against
  the grey-matter ring (most predicted boundary pixels are far from the target);
- ``noisy-volume``: the noisy slices stacked as one subject volume, 2.5 mm apart
  (``volume_metrics``, 3-D distances) against scipy's 3-D transform; throughput in slices/s.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import compare, report
from scipy import ndimage
from scipy.spatial import cKDTree

from ada_core.metrics import segmentation_metrics, volume_metrics

SPACING = (0.5, 0.5)
CASES = ("gm", "gm+stray", "noisy", "scatter->gm", "noisy-volume")


def scipy_surface(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[float, float]:
    """HSD and HD95 of one slice (or volume), medpy style, with scipy's exact transform."""
    st = ndimage.generate_binary_structure(pred.ndim, 1)
    pb = pred ^ ndimage.binary_erosion(pred, st)
    tb = target ^ ndimage.binary_erosion(target, st)
    d_pt = ndimage.distance_transform_edt(~tb, sampling=spacing)[pb]
    d_tp = ndimage.distance_transform_edt(~pb, sampling=spacing)[tb]
    both = np.hstack([d_pt, d_tp])
    return float(both.max()), float(np.percentile(both, 95))


def kdtree_surface(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[float, float]:
    """HSD and HD95 of one slice from KD-trees of the boundary pixels (MONAI's CPU way)."""
    st = ndimage.generate_binary_structure(pred.ndim, 1)
    sp = np.asarray(spacing)
    pb = np.argwhere(pred ^ ndimage.binary_erosion(pred, st)) * sp
    tb = np.argwhere(target ^ ndimage.binary_erosion(target, st)) * sp
    d_pt, _ = cKDTree(tb).query(pb)
    d_tp, _ = cKDTree(pb).query(tb)
    both = np.hstack([d_pt, d_tp])
    return float(both.max()), float(np.percentile(both, 95))


def masks(kind: str, b: int, h: int = 200, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, target)`` bool ``(b, h, w)`` of one case (see the module docstring)."""
    gen = np.random.default_rng(0)
    if kind == "noisy":
        target = np.stack([ndimage.gaussian_filter(gen.random((h, w)), 6) for _ in range(b)])
        target = target > np.quantile(target, 0.9, axis=(1, 2), keepdims=True)
        pred = np.stack(
            [ndimage.binary_dilation(t, iterations=1 + i % 3) for i, t in enumerate(target)]
        )
        return pred, target
    if kind == "scatter->gm":
        return masks("noisy", b, h, w)[0], masks("gm", b, h, w)[1]
    yy, xx = np.mgrid[:h, :w]
    target, pred = [], []
    for _ in range(b):
        cy, cx = h // 2 + gen.integers(-5, 5), w // 2 + gen.integers(-5, 5)
        outer = (yy - cy) ** 2 / 12**2 + (xx - cx) ** 2 / 25**2 < 1
        t = outer & ~((yy - cy) ** 2 / 5**2 + (xx - cx) ** 2 / 8**2 < 1)
        p = np.roll(t, tuple(gen.integers(-3, 4, size=2)), (0, 1))
        if kind == "gm+stray":
            n = gen.integers(1, 5)
            p[gen.integers(0, h, n), gen.integers(0, w, n)] = True
        target.append(t)
        pred.append(p)
    return np.stack(pred), np.stack(target)


def bench_volume(args, device: torch.device) -> dict:
    pred, target = masks("noisy", args.batch)
    spacing = (2.5, *SPACING)
    p = torch.from_numpy(pred)[:, None].float().to(device)
    t = torch.from_numpy(target)[:, None].float().to(device)
    got = volume_metrics(p, t, SPACING, spacing[0])
    hsd, hd95 = scipy_surface(pred, target, spacing)
    if abs(hsd - got["hsd"].item()) > 1e-9 or abs(hd95 - got["hd95"].item()) > 1e-9:
        raise SystemExit("noisy-volume: scipy and batched distances differ")
    rec = compare(
        lambda: volume_metrics(p, t, SPACING, spacing[0]),
        args.batch,
        lambda: scipy_surface(pred, target, spacing),
        args.batch,
        args.reps,
        device,
    )
    return {
        "bench": "metrics",
        "case": "noisy-volume",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "size": [args.batch, 200, 200],
        "batch": 1,
        **rec,
    }


def bench_case(kind: str, args, device: torch.device) -> list[dict]:
    pred, target = masks(kind, args.batch)
    p = torch.from_numpy(pred)[:, None].float().to(device)
    t = torch.from_numpy(target)[:, None].float().to(device)
    got = segmentation_metrics(p, t, SPACING)
    n_ref = min(args.batch, args.ref_slices)
    for i in range(args.batch):
        for name, surface in (("scipy", scipy_surface), ("kd-tree", kdtree_surface)):
            hsd, hd95 = surface(pred[i], target[i], SPACING)
            if abs(hsd - got["hsd"][i].item()) > 1e-9 or abs(hd95 - got["hd95"][i].item()) > 1e-9:
                raise SystemExit(f"{kind}: {name} and batched distances differ on slice {i}")
    boundary = int(sum((m ^ ndimage.binary_erosion(m)).sum() for m in pred[:8]) / 8)
    records = []
    for name, surface in (("edt", scipy_surface), ("kd-tree", kdtree_surface)):

        def ref(surface=surface) -> None:  # noqa: ANN001
            for i in range(n_ref):
                surface(pred[i], target[i], SPACING)

        rec = compare(
            lambda: segmentation_metrics(p, t, SPACING), args.batch, ref, n_ref, args.reps, device
        )
        records.append({"bench": "metrics", "case": f"{kind} vs {name}", "device": str(device),
                        "threads": torch.get_num_threads(), "size": [200, 200],
                        "batch": args.batch, "pred_boundary_px": boundary, **rec})  # fmt: skip
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run (CI)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.batch, args.reps, args.ref_slices = (16, 3, 16) if args.quick else (64, 7, 64)
    device = torch.device(args.device)
    records = []
    for k in args.cases.split(","):
        records += [bench_volume(args, device)] if k == "noisy-volume" else bench_case(k, args, device)
    print(f"segmentation_metrics vs per-slice scipy (distance transforms; KD-trees), slices/s "
          f"({device}, batch {args.batch}):")  # fmt: skip
    report(records, "sl/s")


if __name__ == "__main__":
    main()
