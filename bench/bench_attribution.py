"""Attribution throughput: captum called on the same batch vs ADA's batched shared pass.

For every attributor of ada-captum this prints images/s of
  * ``captum``:  one captum call per batch (the test suite's ``captum_reference``, its
    per-sample target loop replaced by the same target written with tensor ops, so that
    captum gets the batch at once, as a performance engineer would call it; ``random`` has
    no captum method and is timed against itself),
  * ``batched``: one ``attributor.attribute`` call per batch (the shared pass, one member),
and the ratio, the maps checked equal to captum's first (1e-5); then all gradient methods in
one ``ada_core.attribution.attribute_all`` (one forward, one backward per ReLU rule) against
the sum of the separate batched calls; and the cost of a full attribution pass (all methods)
relative to one training epoch (forward + backward + Adam step) on the same images. Needs
captum (``pip install -e plugins/ada-captum[test]``).

    python bench/bench_attribution.py            # CPU default: well under a minute
    python bench/bench_attribution.py --quick    # a few seconds
    python bench/bench_attribution.py --device cuda --size 200 --width 64 --n 512  # paper scale
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ada_core._allocator import keep_freed_memory
from ada_core.attribution import attribute_all
from ada_core.plugins import load_plugins

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))
import captum_reference  # the test-side reference
from captum_reference import METHODS, captum_attribution

warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels are asynchronous; time them to completion


def _timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    fn()  # warm-up (cuDNN autotuning, captum imports, allocator)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


def _data(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 6) ** 2).float()
    return images.to(device), disk.expand(n, 1, size, size).contiguous().to(device)


def batch_target(logits: torch.Tensor, masks: torch.Tensor, target: str,
                 threshold: float = 0.5) -> torch.Tensor:  # fmt: skip
    """``captum_reference.loop_target`` without the loop over samples: ``(B,)`` scores."""
    lg = logits.float()
    if target == "all":
        return lg.sum((1, 2, 3))
    p = torch.sigmoid(lg)
    region = (p.detach() > threshold) if target == "foreground" else (masks > 0.5)
    inside = (p * region).sum((1, 2, 3))
    return torch.where(region.flatten(1).any(1), inside, lg.sum((1, 2, 3)))


def captum_batch(method: str, model, images, masks) -> torch.Tensor:  # noqa: ANN001
    """captum on the whole batch, the target vectorised (``captum_reference`` otherwise)."""
    loop, captum_reference.loop_target = captum_reference.loop_target, batch_target
    try:
        return captum_attribution(method, model, images, masks)
    finally:
        captum_reference.loop_target = loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (a few seconds)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="unet-paper", help="registered model (falls back to 'tiny')")
    p.add_argument("--width", type=int, default=None, help="model width (default: 8 CPU, 64 CUDA)")
    p.add_argument("--size", type=int, default=None, help="image side (default: 64 CPU, 200 CUDA)")
    p.add_argument("--n", type=int, default=None, help="images (default: 32 CPU, 512 CUDA)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 16 CPU, 64 CUDA)")
    p.add_argument("--repeat", type=int, default=None, help="alternating repeats (default 5)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(1)
    keep_freed_memory()  # as the engine does; both sides of the ratio share it
    width = args.width or (4 if args.quick else 64 if cuda else 8)
    size = args.size or (32 if args.quick else 200 if cuda else 64)
    n = args.n or (8 if args.quick else 512 if cuda else 32)
    batch = args.batch or (8 if args.quick else 64 if cuda else 16)
    repeat = args.repeat or (2 if args.quick else 5)

    reg = load_plugins()
    torch.manual_seed(0)
    if args.model in reg.models:
        params = (
            {"width": width} if "width" in reg.models.get(args.model).Config.model_fields else {}
        )
        model = reg.models.build(args.model, params)
        name = args.model
    else:
        from ada_core.testing.models import TinySegModel

        model, name = TinySegModel(), f"tiny (model {args.model!r} not registered)"
    model = model.to(device)
    images, masks = _data(n, size, device)
    amp = {"amp": args.amp}
    label = "bf16" if args.amp and cuda else "fp32"
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if cuda else 'cpu, 1 thread'}), "
        f"model {name} width {width}, {n} images {size}x{size}, batch {batch}, "
        f"{repeat} alternating repeats, {label}"
    )

    def batched(a) -> None:
        for s in range(0, n, batch):
            a.attribute(model, images[s : s + batch], masks[s : s + batch])

    def captum_batched(method: str, a) -> None:
        for s in range(0, n, batch):
            x, y = images[s : s + batch], masks[s : s + batch]
            if method == "random":
                a.attribute(model, x, y)
            else:
                captum_batch(method, model, x, y)

    print(f"{'method':18s} {'captum img/s':>14s} {'batched img/s':>14s} {'ratio':>7s}")
    separate_total = 0.0
    per_method: dict[str, float] = {}
    for method in [*METHODS, "random"]:
        a = reg.attributors.build(method, {} if method == "random" else amp)
        if method != "random":  # the same maps, batch by batch
            x, y = images[:batch], masks[:batch]
            torch.testing.assert_close(a.attribute(model, x, y), captum_batch(method, model, x, y),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
            model.train()
        ratios, t_batch = [], []
        for _ in range(repeat):  # alternating, so that load changes hit both sides
            t_ref = _timed(lambda m=method, a=a: captum_batched(m, a), device) / n
            t_batch.append(_timed(lambda a=a: batched(a), device) / n)
            ratios.append(t_ref / t_batch[-1])
        t_b = sorted(t_batch)[len(t_batch) // 2]
        per_method[method] = t_b
        if method != "random":
            separate_total += t_b
        ratio = sorted(ratios)[len(ratios) // 2]
        print(f"{method:18s} {ratio / t_b:14.1f} {1 / t_b:14.1f} {ratio:6.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip

    shared = {m: reg.attributors.build(m, amp) for m in METHODS}
    t_shared = (
        _timed(lambda: attribute_all(shared, model, images, masks, batch_size=batch), device) / n
    )
    print(
        f"all {len(METHODS)} gradient methods: separate batched calls "
        f"{1 / separate_total:.1f} img/s, "
        f"shared pass {1 / t_shared:.1f} img/s, ratio {separate_total / t_shared:.2f}x"
    )

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> None:
        model.train()
        for s in range(0, n, batch):
            with torch.autocast(device.type, torch.bfloat16, enabled=args.amp and cuda):
                loss = F.binary_cross_entropy_with_logits(
                    model(images[s : s + batch]), masks[s : s + batch]
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_epoch = _timed(epoch, device)
    print(
        f"one training epoch (fwd+bwd+Adam) on the same images: {t_epoch:.3f} s "
        f"({n / t_epoch:.1f} img/s); full attribution pass (shared, all {len(METHODS)} methods): "
        f"{t_shared * n:.3f} s = {t_shared * n / t_epoch:.2f} epochs; vanilla alone (batched): "
        f"{per_method['vanilla'] * n / t_epoch:.2f} epochs"
    )


if __name__ == "__main__":
    main()
