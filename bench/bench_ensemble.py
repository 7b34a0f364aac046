"""``train.ensemble`` against branch-by-branch training: one ADA epoch of a seed's branches.

    python bench/bench_ensemble.py                 # demo sizes on the CPU (configs/demo.toml)
    python bench/bench_ensemble.py --quick         # the same, fewer images and repeats (make bench)
    python bench/bench_ensemble.py --paper --device cuda --batch 16 --json out.json   # GPU
                                                   # (paper sizes; bench/gpu_check.sh runs it)

The protocol is the demo's (configs/demo.toml): 64 x 64 phantom slices, unet-paper width 8,
depth 3, dropout 0.1 (channel), batch 8, the default augmentation, dice loss; ``K`` = 6 ADA
branches (5 attributors + random), each with its own weights, Adam state, generators and
2N training images (the demo's N = 40 training slices; the `none` control, N images, trains
alone either way and is left out).

- ``alone``: what the engine does without the setting: ``loop.train_epoch`` once per branch,
  each on its own model, optimiser, generators and torch's global stream;
- ``ensemble``: what it does with it, per epoch: stack the members (weights, buffers, Adam
  state), ``ensemble.train_epoch``, store each member's slice back.

On CUDA both use the engine's defaults there (bf16 autocast, channels_last, fused Adam; the
ensemble's vmapped convolutions ignore channels_last). Both are timed alternately in one run (bench/_timing.compare); img/s counts every member's
images (K x 2N per epoch). Validation and attribution are per member in both and left out.
"""

from __future__ import annotations

import argparse
import copy
import json
import math

import torch
from _timing import MALLOC, compare

from ada_core.augment import AugmentConfig, Augmenter
from ada_core.config import ComponentSpec
from ada_core.data import PreprocessConfig, load_slices
from ada_core.engine import ensemble
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import make_loss
from ada_core.plugins import load_plugins

DEMO = {"size": 64, "width": 8, "depth": 3, "dropout": 0.1, "train": 40}
#: configs/paper.toml's network and crops; 156 training slices (2N = 312, bench_engine --full).
PAPER = {"size": 200, "width": 64, "depth": 3, "dropout": 0.5, "train": 156}


def setup(k: int, n_train: int, runtime: Runtime, p: dict):
    """K members as the engine holds them at the start of an ADA cycle, and their data."""
    reg = load_plugins()
    dev = runtime.device
    s = p["size"]
    spec = ComponentSpec(name="phantom", params={"n_subjects": math.ceil(n_train / 4),
                                                 "slices_per_subject": 4, "size": [2 * s, 2 * s],
                                                 "spacing": 0.25, "seed": 0})  # fmt: skip
    slices = load_slices(reg.build("dataset", spec), PreprocessConfig(spacing=0.5, size=(s, s)))
    train = slices.subset(range(n_train)).to(dev)
    torch.manual_seed(0)
    model = reg.build("model", ComponentSpec(name="unet-paper", params={
        "width": p["width"], "depth": p["depth"], "dropout": p["dropout"]})).to(dev)
    members = []
    for i in range(k):
        g = torch.Generator().manual_seed(i)
        keep = (torch.rand(train.images.shape, generator=g) > 0.1).float().to(dev)
        images = torch.cat([train.images, train.images * keep])  # conventional + "ADA" copies
        masks = torch.cat([train.masks, train.masks])
        m = copy.deepcopy(model)
        gens = {name: torch.Generator(device=dev).manual_seed(10 * i + j)
                for j, name in enumerate(("shuffle", "augment"))}  # fmt: skip
        members.append({"model": m, "opt": runtime.optimizer(list(m.parameters()), 3e-3),
                        "gens": gens, "images": images, "masks": masks,
                        "dropout": torch.Generator(device=dev).manual_seed(100 + i)})  # fmt: skip
    return members


def run(args: argparse.Namespace) -> dict:
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    protocol = PAPER if args.paper else DEMO
    # the engine's defaults: bf16 autocast, channels_last and fused Adam on CUDA, fp32 on the CPU
    cuda = dev.type == "cuda"
    runtime = Runtime(dev, amp=cuda, channels_last=cuda, fused_adam=cuda)
    members = setup(args.branches, args.train or protocol["train"], runtime, protocol)
    config = AugmentConfig()
    loss_fn = make_loss("dice")
    augmenters = [Augmenter(config, m["gens"]["augment"]) for m in members]

    def alone() -> None:
        for m, aug in zip(members, augmenters, strict=True):
            train_epoch(m["model"], m["opt"], m["images"], m["masks"], loss_fn=loss_fn,
                        batch_size=args.batch, shuffle=m["gens"]["shuffle"], augmenter=aug,
                        runtime=runtime).item()  # fmt: skip

    def together() -> None:
        models = [m["model"] for m in members]
        stacked = ensemble.StackedModel(models)
        opt = runtime.optimizer(list(stacked.params.values()), 3e-3)
        ensemble.stack_optimizer(opt, [m["opt"] for m in members])
        ensemble.train_epoch(
            stacked, opt, [m["images"] for m in members], [m["masks"] for m in members],
            loss_fn=loss_fn, batch_size=args.batch,
            shuffles=[m["gens"]["shuffle"] for m in members],
            dropouts=[m["dropout"] for m in members], augmenters=augmenters, runtime=runtime,
            augment_masks=[None] * len(members)).tolist()  # fmt: skip
        stacked.store(models)
        ensemble.unstack_optimizer(opt, [m["opt"] for m in members])

    images = sum(m["images"].shape[0] for m in members)
    r = compare(together, images, alone, images, args.reps, dev)
    out = {"bench": "ensemble_epoch", "protocol": "paper" if args.paper else "demo",
           "size": protocol["size"], "width": protocol["width"], "device": str(dev), "amp": cuda, "threads": torch.get_num_threads(),
           "branches": args.branches, "images_per_branch": int(members[0]["images"].shape[0]),
           "batch": args.batch, "ensemble_img_s": r["fast_per_s"], "alone_img_s": r["ref_per_s"],
           "ratio": r["ratio"], "ratio_min": r["ratio_min"], "ratio_max": r["ratio_max"],
           "reps": r["reps"], "malloc": MALLOC}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 training slices, 3 repeats")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="the demo's train.batch_size")
    ap.add_argument("--branches", type=int, default=6)
    ap.add_argument("--paper", action="store_true", help="paper sizes (200 x 200, width 64)")
    ap.add_argument("--train", type=int, default=None, help="training slices N (default: "
                    f"{DEMO['train']}, with --paper {PAPER['train']})")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args()
    if args.quick:
        args.train, args.reps = min(args.train or 16, 16), min(args.reps, 3)
    out = run(args)
    print(json.dumps(out))
    print(f"{out['protocol']} ({out['size']} px, width {out['width']}): {out['branches']} branches x {out['images_per_branch']} images, batch {out['batch']}, "
          f"{out['device']}, {out['threads']} thread(s): ensemble {out['ensemble_img_s']:.1f} img/s, "
          f"branch by branch {out['alone_img_s']:.1f} img/s, ratio {out['ratio']:.2f}x "
          f"({out['ratio_min']:.2f}-{out['ratio_max']:.2f} over {out['reps']} repeats; target 1.5x)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
