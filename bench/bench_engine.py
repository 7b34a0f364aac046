"""End to end: the engine's epochs against its raw training step and a naive engine.

    python bench/bench_engine.py --quick     # 64 x 64, width-8 U-Net: < 60 s on 2 CPU cores
    python bench/bench_engine.py --full      # paper sizes (200 x 200, width 64, batch 16), GPU
    python bench/bench_engine.py --full --device cpu --train-images 32   # paper sizes, few images
    python bench/bench_engine.py --smoke --json out.json   # 32 x 32, width 4: seconds (gpu_check --smoke)

Measured, on one protocol (phantom slices, unet-paper, batch 16, GradCam, window Z):

- ``raw_step``: forward + backward + Adam on one fixed batch, nothing else: the ceiling;
  ``--modes`` also times it in each numeric mode (``fp32``; on CUDA ``bf16_cl``: bf16
  autocast + channels_last + fused Adam, and ``compile``: the same, compiled);
- ``standard_epoch``: what the engine does per standard epoch (seeded order, index the
  device-resident tensors, batched augmentation, the step; then validation);
- ``ada_cycle``: attribution of every training image + keep masks + ADA images, one epoch
  on the 2N images, validation: the first epoch of an ADA cycle;
- the same epoch and cycle through a **naive engine**: fp32, per-image captum LayerGradCam
  calls, per-image scipy augmentation, a Python loop over every window for the mask,
  batches built from numpy, ``loss.item()`` every step, per-image validation.

It prints one JSON object per line, then a table, and the wall time of one seed of the paper
schedule (100 standard epochs + 7 branches x 31 cycles x 30 epochs, scoring left out)
*extrapolated* from the measured epochs to ``--paper-images`` training slices.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import numpy as np
import torch
from scipy import ndimage

from ada_core._allocator import keep_freed_memory
from ada_core.augment import AugmentConfig, Augmenter
from ada_core.config import ComponentSpec
from ada_core.data import PreprocessConfig, load_slices
from ada_core.engine.cycle import compute_keep
from ada_core.engine.loop import Runtime, evaluate_slices, train_epoch
from ada_core.engine.losses import soft_dice_loss
from ada_core.plugins import load_plugins

PROTOCOLS = {
    "smoke": {"size": 32, "width": 4, "depth": 2, "window": 4, "train": 16, "val": 8},
    "quick": {"size": 64, "width": 8, "depth": 2, "window": 8, "train": 48, "val": 16},
    "full": {"size": 200, "width": 64, "depth": 3, "window": 20, "train": 312, "val": 72},
}
BATCH = 16
#: One seed of the paper: 5 attributors + random (ADA branches) and the `none` control.
STANDARD_EPOCHS, CYCLES, ADA_EPOCHS, ADA_BRANCHES, CONTROLS = 100, 31, 30, 6, 1
#: How each raw-step mode builds its runtime (CUDA-only modes are skipped elsewhere).
MODES = {
    "fp32": {},
    "bf16_cl": {"amp": True, "channels_last": True, "fused_adam": True},
    "compile": {"amp": True, "channels_last": True, "fused_adam": True, "compile": "default"},
}
CUDA_ONLY = ("bf16_cl", "compile")
FORMULA = ("seed_s = E_std*(t_std_train*f + t_std_val*g) + B*C*(t_attr*f + E_ada*(t_ada_train*f + "
           "t_ada_val*g)) + K*C*E_ada*(t_std_train*f + t_std_val*g); f = N_paper/N, g = V_paper/V")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def setup(p: dict, dev: torch.device, amp: bool):
    reg = load_plugins()
    s = p["size"]
    n = p["train"] + p["val"]
    spec = ComponentSpec(name="phantom", params={"n_subjects": math.ceil(n / 8), "slices_per_subject": 8,
                                                 "size": [s, s], "spacing": 0.5, "seed": 1})  # fmt: skip
    slices = load_slices(reg.build("dataset", spec), PreprocessConfig(spacing=0.5, size=(s, s)))
    train = slices.subset(range(p["train"])).to(dev)
    val = slices.subset(range(p["train"], n)).to(dev)
    torch.manual_seed(0)
    model = reg.build("model", ComponentSpec(name="unet-paper", params={
        "width": p["width"], "depth": p["depth"], "dropout": 0.5})).to(dev)  # fmt: skip
    attributor = reg.build("attributor", ComponentSpec(name="gradcam", params={"amp": amp}))
    mask = reg.build("mask", ComponentSpec(name="window", params={"size": p["window"]}))
    return train, val, model, attributor, mask


# --------------------------------------------------------------------------- the engine


def raw_step(model, runtime, train, steps: int) -> float:
    opt = runtime.optimizer(list(model.parameters()), 1e-3)
    x, y = train.images[:BATCH], train.masks[:BATCH]
    trainer = runtime.train_module(model)
    trainer.train()
    for i in range(steps + 1):
        if i == 1:  # the first step warms up
            sync(runtime.device)
            t = time.perf_counter()
        runtime.step_begin()
        with runtime.autocast():
            loss = soft_dice_loss(trainer(runtime.prepare(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(runtime.device)
    return steps * BATCH / (time.perf_counter() - t)


def engine_epoch(model, runtime, train, val, attributor=None, mask=None) -> dict[str, float]:
    opt = runtime.optimizer(list(model.parameters()), 1e-3)
    gens = [torch.Generator(device=runtime.device).manual_seed(k) for k in (0, 1)]
    t0 = time.perf_counter()
    images, masks, eligible = train.images, train.masks, None
    if attributor is not None:
        keep, _ = compute_keep(attributor, mask, model, train, 64)
        images = torch.cat([train.images, mask.apply(train.images, keep)])
        masks = torch.cat([train.masks, train.masks])
    sync(runtime.device)
    t1 = time.perf_counter()
    loss = train_epoch(runtime.train_module(model), opt, images, masks, loss_fn=soft_dice_loss, batch_size=BATCH,
                       shuffle=gens[0], augmenter=Augmenter(AugmentConfig(), gens[1]),
                       runtime=runtime, augment_mask=eligible)  # fmt: skip
    float(loss)  # the phase's one read per epoch
    t2 = time.perf_counter()
    evaluate_slices(model, val, 64, runtime)
    t3 = time.perf_counter()
    return {"attribution_s": t1 - t0, "train_s": t2 - t1, "val_s": t3 - t2, "seconds": t3 - t0,
            "train_images": int(images.shape[0])}  # fmt: skip


# --------------------------------------------------------------------------- naive engine


def naive_augment(img: np.ndarray, msk: np.ndarray, cfg: AugmentConfig, rng) -> tuple:
    h, w = img.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    s = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    dx, dy = 0.0, 0.0
    if rng.uniform() < cfg.p_elastic:
        dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), cfg.elastic_sigma) * cfg.elastic_alpha
                  for _ in range(2))  # fmt: skip
    px, py = xx - cx + dx - tx, yy - cy + dy - ty
    cols = (math.cos(a) * px + math.sin(a) * py) / s + cx
    rows = (-math.sin(a) * px + math.cos(a) * py) / s + cy
    out = ndimage.map_coordinates(img, [rows, cols], order=1, mode="nearest")
    out += rng.uniform(-cfg.channel_shift, cfg.channel_shift)
    return out, (ndimage.map_coordinates(msk, [rows, cols], order=1, mode="nearest") >= 0.5).astype(np.float32)


def naive_window(sal: np.ndarray, gt: np.ndarray, z: int) -> np.ndarray:
    """A Python loop over every window: the most saliency outside the ground truth."""
    h, w = sal.shape
    outside = np.where(gt > 0, 0.0, sal)
    best, where = -np.inf, None
    for r in range(h - z + 1):
        for c in range(w - z + 1):
            if gt[r : r + z, c : c + z].all():
                continue
            score = outside[r : r + z, c : c + z].sum()
            if score > best:
                best, where = score, (r, c)
    keep = np.ones_like(sal, dtype=np.float32)
    if where is not None:
        r, c = where
        keep[r : r + z, c : c + z] = gt[r : r + z, c : c + z]
    return keep


def naive_epoch(model, dev, train, val, z: int, ada: bool, rng) -> dict[str, float]:
    from captum.attr import LayerAttribution, LayerGradCam

    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images, masks = train.images.cpu().numpy()[:, 0], train.masks.cpu().numpy()[:, 0]
    t0 = time.perf_counter()
    if ada:
        model.eval()
        layer = model.attribution_layers()[model.default_attribution_layer]
        cam = LayerGradCam(lambda x: model(x).sum((1, 2, 3)), layer)
        extra = []
        for k in range(len(images)):  # one captum call per image
            x = torch.from_numpy(images[k][None, None]).to(dev)
            sal = LayerAttribution.interpolate(cam.attribute(x, relu_attributions=True), x.shape[2:])
            extra.append(images[k] * naive_window(sal[0, 0].detach().cpu().numpy(), masks[k], z))
        images, masks = np.concatenate([images, np.stack(extra)]), np.concatenate([masks, masks])
    t1 = time.perf_counter()
    model.train()
    cfg = AugmentConfig()
    order = rng.permutation(len(images))
    for start in range(0, len(images), BATCH):
        idx = order[start : start + BATCH]
        pairs = [naive_augment(images[i], masks[i], cfg, rng) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None].astype(np.float32)).to(dev)
        y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None]).to(dev)
        loss = soft_dice_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # a host sync per step, as naive loops log
    t2 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for k in range(len(val)):  # per-image validation
            pred = (model(val.images[k : k + 1]) > 0).float().cpu().numpy()
            gt = val.masks[k : k + 1].cpu().numpy()
            2 * (pred * gt).sum() / max(pred.sum() + gt.sum(), 1)
    t3 = time.perf_counter()
    return {"attribution_s": t1 - t0, "train_s": t2 - t1, "val_s": t3 - t2, "seconds": t3 - t0,
            "train_images": len(images)}  # fmt: skip


# --------------------------------------------------------------------------- report


def extrapolate(std: dict, ada: dict, measured: tuple[int, int], paper: tuple[int, int]) -> float:
    """Seconds of one seed of the paper schedule: training and attribution scaled from
    ``measured[0]`` to ``paper[0]`` training slices, validation from ``measured[1]`` to
    ``paper[1]`` validation slices (both linear in the slices)."""
    f, g = paper[0] / measured[0], paper[1] / measured[1]
    std_epoch = std["train_s"] * f + std["val_s"] * g
    ada_epoch = ada["train_s"] * f + ada["val_s"] * g
    attribution = ada["attribution_s"] * f
    return (STANDARD_EPOCHS * std_epoch
            + ADA_BRANCHES * CYCLES * (attribution + ADA_EPOCHS * ada_epoch)
            + CONTROLS * CYCLES * ADA_EPOCHS * std_epoch)  # fmt: skip


def formula_values(std: dict, ada: dict, measured: tuple[int, int], paper: tuple[int, int]) -> dict:
    """The numbers :data:`FORMULA` is evaluated with (printed beside the result)."""
    return {"E_std": STANDARD_EPOCHS, "B": ADA_BRANCHES, "C": CYCLES, "E_ada": ADA_EPOCHS, "K": CONTROLS,
            "t_std_train": std["train_s"], "t_std_val": std["val_s"], "t_attr": ada["attribution_s"],
            "t_ada_train": ada["train_s"], "t_ada_val": ada["val_s"], "N": measured[0], "V": measured[1],
            "N_paper": paper[0], "V_paper": paper[1]}  # fmt: skip


def raw_modes(model, train, dev: torch.device, modes: list[str], steps: int, repeat: int) -> dict[str, float]:
    """Raw-step images/s per numeric mode (median of ``repeat``), each on its own model copy."""
    out = {}
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"--modes: {mode!r} is not one of {sorted(MODES)}")
        if mode in CUDA_ONLY and dev.type != "cuda":
            raise SystemExit(f"--modes: {mode!r} needs a CUDA device (this run is on {dev})")
        runtime = Runtime(dev, **MODES[mode])
        m = copy.deepcopy(model)
        if runtime.channels_last:
            m = m.to(memory_format=torch.channels_last)
        raw_step(m, runtime, train, steps)  # warm-up (compilation, kernels)
        out[mode] = float(np.median([raw_step(m, runtime, train, steps) for _ in range(repeat)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="64 x 64, width 8 (make bench)")
    group.add_argument("--full", action="store_true", help="paper sizes (a GPU)")
    group.add_argument("--smoke", action="store_true", help="32 x 32, width 4, one repeat: that it runs")
    ap.add_argument("--modes", default=None,
                    help="raw-step modes, comma-separated, of " + ", ".join(MODES)
                    + " (default: all on CUDA, fp32 on CPU)")
    ap.add_argument("--json", default=None, help="also write the figures gpu_check reads to this file")
    ap.add_argument("--device", default=None, help="default: cuda for --full when available, else cpu")
    ap.add_argument("--train-images", type=int, help="training slices to measure on")
    ap.add_argument("--paper-images", type=int, default=312,
                    help="training slices the extrapolation scales to (312: the paper-sized phantom)")
    ap.add_argument("--paper-val", type=int, default=72, help="validation slices it scales to")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: fair against the one-thread scipy and numpy loops)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats of every case (default 5 quick, 3 full)")
    ap.add_argument("--compile", default="off", help="train.compile mode to measure (e.g. reduce-overhead)")
    ap.add_argument("--naive", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the naive engine (default: with --quick)")
    args = ap.parse_args()
    name = "full" if args.full else "smoke" if args.smoke else "quick"
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does (ADA_MALLOC=default: glibc's own)
    repeat = args.repeat or (3 if args.full else 1 if args.smoke else 5)
    p = dict(PROTOCOLS[name])
    if args.train_images:
        p["train"], p["val"] = args.train_images, max(BATCH, args.train_images // 4)
    dev = torch.device(args.device or ("cuda" if args.full and torch.cuda.is_available() else "cpu"))
    on_gpu = dev.type == "cuda"
    runtime = Runtime(dev, amp=on_gpu, channels_last=on_gpu, fused_adam=on_gpu, compile=args.compile)
    train, val, model, attributor, mask = setup(p, dev, amp=on_gpu)
    if on_gpu:
        model = model.to(memory_format=torch.channels_last)

    def emit(what: str, engine: str, **values: float) -> None:
        row = {"bench": "engine", "protocol": name, "device": str(dev), "threads": torch.get_num_threads(),
               "what": what, "engine": engine, **values}  # fmt: skip
        print(json.dumps(row), flush=True)

    engine_epoch(model, runtime, train, val, attributor, mask)  # warm-up (kernels, allocator)
    with_naive = args.naive if args.naive is not None else name == "quick"
    rng = np.random.default_rng(0)
    steps = max(4, p["train"] // BATCH)
    # Alternate every case within each repeat, so that a shared machine's load shifts all of
    # them alike; ratios are taken per repeat, then their median.
    runs: dict[str, list[dict]] = {}
    for _ in range(repeat):
        runs.setdefault("raw", []).append({"images_per_s": raw_step(model, runtime, train, steps)})
        for what, is_ada in (("standard_epoch", False), ("ada_cycle", True)):
            runs.setdefault(what, []).append(engine_epoch(model, runtime, train, val,
                                                          *((attributor, mask) if is_ada else ())))
            if with_naive:
                runs.setdefault(f"naive {what}", []).append(
                    naive_epoch(model, dev, train, val, p["window"], is_ada, rng))

    def ips(r: dict) -> float:
        return r["images_per_s"] if "train_s" not in r else r["train_images"] / (r["attribution_s"] + r["train_s"])

    def median(values: list[float]) -> float:
        return float(np.median(values))

    raw = median([ips(r) for r in runs["raw"]])
    emit("raw_step", "engine", images_per_s=raw, repeats=repeat)
    best, table = {}, []
    for what in ("standard_epoch", "ada_cycle"):
        mine = runs[what]
        best[what] = min(mine, key=lambda r: r["seconds"])
        of_raw = median([ips(r) / ips(q) for r, q in zip(mine, runs["raw"], strict=True)])
        row = {**best[what], "images_per_s": median([ips(r) for r in mine]), "of_raw": of_raw}
        emit(what, "engine", **row)
        cells = [what, row["images_per_s"], of_raw, row["seconds"], row["attribution_s"],
                 row["train_s"], row["val_s"]]  # fmt: skip
        if with_naive:
            slow = runs[f"naive {what}"]
            ratios = [n["seconds"] / r["seconds"] for r, n in zip(mine, slow, strict=True)]
            emit(what, "naive", **min(slow, key=lambda r: r["seconds"]),
                 images_per_s=median([ips(r) for r in slow]), engine_speedup=median(ratios),
                 speedup_min=min(ratios), speedup_max=max(ratios))  # fmt: skip
            cells += [median([ips(r) for r in slow]), median(ratios), min(ratios), max(ratios)]
        table.append(cells)
    measured, paper = (p["train"], p["val"]), (args.paper_images, args.paper_val)
    seconds = extrapolate(best["standard_epoch"], best["ada_cycle"], measured, paper)
    terms = formula_values(best["standard_epoch"], best["ada_cycle"], measured, paper)
    emit("paper_seed_extrapolated", "engine", seconds=seconds, hours=seconds / 3600,
         paper_images=args.paper_images, paper_val=args.paper_val)  # fmt: skip
    modes = args.modes.split(",") if args.modes else (list(MODES) if on_gpu else ["fp32"])
    per_mode = raw_modes(model, train, dev, modes, steps, repeat)
    for mode, value in per_mode.items():
        emit("raw_step_mode", mode, images_per_s=value, repeats=repeat)
    ada_fraction = next(r for r in table if r[0] == "ada_cycle")[2]
    if args.json:
        figures = {"protocol": name, "device": str(dev), "batch": BATCH, "size": p["size"],
                   "width": p["width"], "repeats": repeat, "raw_step_img_s": per_mode,
                   "engine_raw_step_img_s": raw, "ada_cycle_fraction": ada_fraction,
                   "standard_epoch_fraction": next(r for r in table if r[0] == "standard_epoch")[2],
                   "seed_minutes": seconds / 60, "seed_formula": FORMULA, "seed_formula_values": terms}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)

    print(f"\n{name}: {p['size']}x{p['size']}, unet-paper width {p['width']}, batch {BATCH}, "
          f"{p['train']} train / {p['val']} val slices, {dev}, {torch.get_num_threads()} thread(s), "
          f"{repeat} repeats")
    print(f"{'':16}{'img/s':>8}{'of raw':>8}{'s/epoch':>9}{'attr s':>8}{'train s':>9}{'val s':>7}"
          + (f"{'naive img/s':>13}{'speed-up (min-max)':>22}" if with_naive else ""))
    print(f"{'raw step':16}{raw:8.1f}")
    for mode, value in per_mode.items():
        print(f"{'  ' + mode:16}{value:8.1f}")
    for cells in table:
        line = f"{cells[0]:16}{cells[1]:8.1f}{cells[2]:8.2f}" + "".join(f"{v:{w}.2f}" for v, w in zip(cells[3:7], (9, 8, 9, 7), strict=True))
        if with_naive:
            line += f"{cells[7]:13.1f}{cells[8]:10.1f}x ({cells[9]:.1f}-{cells[10]:.1f})"
        print(line)
    print(f"one seed of the paper schedule at these sizes, extrapolated to {args.paper_images} "
          f"training / {args.paper_val} validation slices: {seconds / 3600:.2f} h (scoring left out)")
    print(f"  {FORMULA}")
    print("  with " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in terms.items()))


if __name__ == "__main__":
    main()
