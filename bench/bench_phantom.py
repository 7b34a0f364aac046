"""Phantom generation and slice preprocessing throughput on the CPU.

    python bench/bench_phantom.py [--quick] [--threads N]

1. Phantom: ``generate`` renders a whole scan batched (per-structure boxes, one tensor op per
   layer) vs the naive reference, one slice per call in a Python loop.
2. Preprocessing an upsampled volume (0.5 mm -> 0.25 mm, 200 x 200 crop): ``preprocess_volume``
   samples only the cropped pixels vs the naive reference that resizes whole slices and crops.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from _timing import cpu_args
from ada_core.data import PreprocessConfig, preprocess_volume
from ada_core.interfaces import Subject, Volume
from ada_scgm.phantom import PhantomConfig, generate


def rate(fn, n_items: int, repeat: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return n_items * repeat / (time.perf_counter() - t)


def bench_phantom(size: int, slices: int, repeat: int) -> None:
    spacing = 0.25 if size >= 128 else 0.5
    fast_cfg = PhantomConfig(size=(size, size), spacing=spacing, slices_per_subject=slices,
                             context_cue=True)  # fmt: skip
    one_cfg = fast_cfg.model_copy(update={"slices_per_subject": 1})
    fast = rate(lambda: generate(fast_cfg, 0), slices, repeat)
    naive = rate(lambda: [generate(one_cfg, 0, k) for k in range(slices)], slices, repeat)
    print(f"phantom {size}x{size}: batched {fast:8.0f} slices/s | one slice per call "
          f"{naive:8.0f} slices/s | ratio {fast / naive:5.1f}x")


def bench_preprocess(slices: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    shape = (384, 384, slices)
    mask = np.zeros(shape, np.uint8)
    mask[180:200, 170:210, :] = 1
    vol = Volume(Subject("b"), rng.uniform(size=shape).astype(np.float32), mask, (0.5, 0.5, 3.0))
    config = PreprocessConfig(spacing=0.25, size=(200, 200))

    def naive() -> None:  # resize whole slices, then crop in a loop
        img = torch.from_numpy(np.ascontiguousarray(np.rot90(vol.image).transpose(2, 0, 1)))
        big = F.interpolate(img[:, None], size=(768, 768), mode="bilinear", align_corners=False)
        m = torch.from_numpy(np.ascontiguousarray(np.rot90(vol.mask).transpose(2, 0, 1))).float()
        bigm = F.interpolate(m[:, None], size=(768, 768), mode="bilinear", align_corners=False)
        for z in range(slices):
            rows, cols = torch.nonzero(bigm[z, 0] >= 0.5, as_tuple=True)
            r, c = int(rows.float().mean()), int(cols.float().mean())
            crop = big[z, 0, r - 100 : r + 100, c - 100 : c + 100]
            (crop - crop.mean()) / crop.std()

    fast = rate(lambda: preprocess_volume(vol, config), slices, repeat)
    ref = rate(naive, slices, repeat)
    print(f"preprocess 384x384 @0.5mm -> 200x200 @0.25mm: {fast:7.0f} slices/s | resize-all "
          f"then crop {ref:7.0f} slices/s | ratio {fast / ref:5.1f}x")


def main() -> None:
    args = cpu_args(__doc__, "a few-second smoke run")
    slices, repeat = (8, 1) if args.quick else (64, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for size in (64, 96, 200):
        bench_phantom(size, slices, repeat)
    bench_preprocess(8 if args.quick else 20, repeat)


if __name__ == "__main__":
    main()
