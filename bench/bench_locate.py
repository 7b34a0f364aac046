"""Prediction without a cord mask against prediction with one, on the real MRI of ../shared/data.

    python bench/bench_locate.py [--run RUN] [--epochs N] [--threads N]

Trains a brief model (unless --run names one) on the BIDS sessions of
../shared/data/gm-challenge-dev (0.5 mm, 64 x 64 crops, a width-8 U-Net), then segments the
SCT volume (never trained on) and every BIDS session four ways: crops on the manual cord mask
(``--cord``, as training centres them), ``located`` (the default without a cord mask: a
sliding window finds the grey matter, crops are centred on it), ``sliding`` (the sliding
window's own output, nnU-Net's way) and ``centre`` (crops on the image centre, ADA 0.1). It
prints the volume Dice of each against the manual GM, the difference to ``--cord`` and the
time per volume as a ratio to ``--cord`` (the fastest).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODES = ("cord", "located", "sliding", "centre")


def train(out: Path, epochs: int, standardise: str = "none") -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from studykit import write_config

    config = {
        "name": "locate", "output": str(out),
        "data": {"name": "bids", "params": {"root": str(DATA / "gm-challenge-dev")},
                 "preprocess": {"spacing": 0.5, "size": [64, 64], "standardise": standardise},
                 "split": {"val_fraction": 0.34, "seed": 0}},
        "model": {"name": "unet-paper", "params": {"width": 8, "depth": 3, "dropout": 0.0}},
        "attributors": ["none"],
        "train": {"standard_epochs": epochs, "cycles": 1, "ada_epochs": 1, "batch_size": 8,
                  "lr": 3e-3, "device": "cpu", "robustness": False},
    }  # fmt: skip
    path = write_config(config, out / "locate.toml")
    proc = subprocess.run([sys.executable, "-m", "ada_core.cli", "train", str(path), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return out / "locate"


def volumes() -> list[tuple[str, Path, Path, Path]]:
    sct = DATA / "sct-testing-t2s"
    out = [("sct-testing-t2s", sct / "t2s.nii.gz", sct / "t2s_gmseg_manual.nii.gz", sct / "t2s_seg.nii.gz")]
    root = DATA / "gm-challenge-dev"
    for sub in ("sub-9418", "sub-9604", "sub-9709Ses1", "sub-9709Ses2"):
        stem = f"{sub}_run-1_T2starw"
        labels = root / "derivatives" / "labels" / sub / "anat"
        out.append((sub, root / sub / "anat" / f"{stem}.nii.gz",
                    labels / f"{stem}_gmseg-manual.nii.gz", labels / f"{stem}_seg-manual.nii.gz"))
    return out


def canonical(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float32), tuple(float(z) for z in img.header.get_zooms()[:3])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a trained run (default: train one, ~1-2 min)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--standardise", default="none", choices=("none", "zscore_cord", "histogram"),
                    help="data.preprocess.standardise of the trained model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ada_core.predict import load_run_checkpoint, predict_volume

    run = args.run or train(Path(tempfile.mkdtemp(prefix="ada-locate-")), args.epochs,
                              args.standardise)  # fmt: skip
    ckpt = load_run_checkpoint(run, "standard")
    print(f"model: {ckpt.path} (preprocess {ckpt.preprocess.spacing} mm, {ckpt.preprocess.size}, "
          f"standardise {ckpt.preprocess.standardise})")
    print(f"{'volume':<16}" + "".join(f"{m:>10}" for m in MODES) + "   located-cord  time/vol vs cord")
    for name, image, gm, cord in volumes():
        data, zooms = canonical(image)
        truth = canonical(gm)[0] > 0.5
        cord_mask = (canonical(cord)[0] > 0.5).astype(np.float32)
        dice, secs = {}, {}
        for mode in MODES:
            t = time.perf_counter()
            prob = predict_volume(ckpt.model, data, zooms, ckpt.preprocess,
                                  cord=cord_mask if mode == "cord" else None,
                                  locate="centre" if mode == "cord" else mode,
                                  standard_scale=ckpt.meta.get("standard_scale"))  # fmt: skip
            secs[mode] = time.perf_counter() - t
            pred = prob >= 0.5
            dice[mode] = 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)
        ratios = " ".join(f"{m}={secs[m] / secs['cord']:.1f}x" for m in MODES[1:])
        print(f"{name:<16}" + "".join(f"{dice[m]:>10.3f}" for m in MODES)
              + f"   {dice['located'] - dice['cord']:+.3f}   cord {secs['cord']:.2f}s, {ratios}")


if __name__ == "__main__":
    main()
