"""What each torchrun process of tests/test_distributed.py's DDP test runs (2 ranks, gloo).

Usage: ``torchrun --nproc_per_node 2 tests/ddp_worker.py CONFIG OUT``. It

1. runs ``run_study`` on CONFIG (``train.ddp = true``, mode train) through the engine;
2. attributes the run's training slices with the sharded pass (``compute_keep`` with a
   ``DataParallel``) for a stateless and a stateful attributor; rank 0 saves the gathered
   masks to ``OUT/keep-<method>.pt``;
3. trains two epochs of a batch-norm network under DDP and saves each rank's weights to
   ``OUT/bn-rank<r>.pt`` (they must be identical);
4. trains one epoch of a network without batch norm or dropout with a per-sample mean loss
   under DDP (11 images, batch 8: an uneven last batch); rank 0 saves the weights and loss to
   ``OUT/plain.pt`` (they must equal one process's full-batch training up to rounding).

The test compares these files with independent single-process computations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ada_core.augment import AugmentConfig, Augmenter
from ada_core.config import load_config
from ada_core.data import load_slices
from ada_core.engine import run_study
from studykit import load_pt as load_checkpoint
from ada_core.engine.cycle import compute_keep
from ada_core.engine.ddp import DataParallel
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import bce_loss
from ada_core.plugins import load_plugins
from ada_core.splits import fold_slices, plan_folds
from ada_core.testing.models import TinySegModel

#: Batch size of the sharded attribution: 12 training slices -> batches of 5, 5, 2.
KEEP_BATCH = 5


def plain_net() -> nn.Module:
    """No batch norm, no dropout: DDP's averaged gradient is the full batch's."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def plain_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(11, 1, 8, 8, generator=g)
    return x, (torch.rand(11, 1, 8, 8, generator=g) > 0.6).float()


def main(config_path: str, out: str) -> None:
    out_dir = Path(out)
    dist.init_process_group("gloo")  # ours: run_study leaves a group it did not open in place
    config = load_config(Path(config_path))
    reg = load_plugins()
    result = run_study(config, reg, mode="train", quiet=True)
    rank, world = dist.get_rank(), dist.get_world_size()
    ddp = DataParallel(rank, world, dist.new_group(backend="gloo"))
    cpu = torch.device("cpu")

    slices = load_slices(reg.build("dataset", config.data), config.data.preprocess)
    (fold,) = plan_folds(slices.group, slices.site, config.data.split, subjects=slices.subject)
    train = fold_slices(slices, fold)[0]
    model = reg.build("model", config.model)
    model.load_state_dict(load_checkpoint(result.run_dir / "seed-0/standard/last.pt")["model"])
    mask = reg.build("mask", config.mask)
    for spec in config.attributors:
        attributor = reg.build("attributor", spec)
        attributor.set_seed(7)
        keep, _ = compute_keep(attributor, mask, model, train, KEEP_BATCH, ddp)
        if rank == 0:
            torch.save({"keep": keep, "counters": dict(mask.counters)}, out_dir / f"keep-{spec.name}.pt")
        mask.counters.clear()

    torch.manual_seed(0)
    bn = TinySegModel()
    trainer = nn.parallel.DistributedDataParallel(bn)
    opt = torch.optim.Adam(bn.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 1, 16, 16, generator=g), (torch.rand(20, 1, 16, 16, generator=g) > 0.7).float()
    shuffle, aug = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    runtime = Runtime(cpu, ddp=ddp)
    for _ in range(2):
        train_epoch(trainer, opt, x, y, loss_fn=bce_loss, batch_size=8, shuffle=shuffle,
                    augmenter=Augmenter(AugmentConfig(), aug), runtime=runtime)  # fmt: skip
    torch.save(bn.state_dict(), out_dir / f"bn-rank{rank}.pt")

    net = plain_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = plain_data()
    loss = train_epoch(nn.parallel.DistributedDataParallel(net), opt, x, y, loss_fn=bce_loss,
                       batch_size=8, shuffle=torch.Generator().manual_seed(4), augmenter=None,
                       runtime=runtime)  # fmt: skip
    if rank == 0:
        torch.save({"model": net.state_dict(), "loss": loss}, out_dir / "plain.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
