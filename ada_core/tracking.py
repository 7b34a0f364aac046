"""Experiment tracking: TensorBoard logging of each trained job (``train.tensorboard = true``).

The engine calls an observer factory per job (``run_study(observe=...)``); the observer here
writes the job's training loss and validation metrics per epoch and, at the job's end, its
samples figure (``samples.pt`` of an ADA branch: image, saliency, keep mask, ADA image) to
``<run>/tensorboard/<job path>/``, one TensorBoard run per job
(``tensorboard --logdir runs/demo/tensorboard``). The run folder stays the record: these
files are a view of ``metrics.jsonl`` and ``samples.pt``, and deleting them loses nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ada_core.errors import ConfigError

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.engine.jobs import Job
    from ada_core.engine.study import JobObserver, ObserverFactory

__all__ = ["TENSORBOARD_DIR", "TensorBoardObserver", "check_tracking", "observer_factory", "samples_grid"]

#: Folder of the TensorBoard runs, relative to the run folder.
TENSORBOARD_DIR = "tensorboard"


def check_tracking(config: ExperimentConfig) -> None:
    """Raise before any work when the config asks for a tracker that is not installed.

    Raises:
        ConfigError: ``train.tensorboard = true`` without the tensorboard package.
    """
    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "train.tensorboard = true, but the tensorboard package is not installed; install "
            "it (pip install 'ada-seg[tensorboard]') or set train.tensorboard = false "
            "(--set train.tensorboard=false)"
        )


def observer_factory(config: ExperimentConfig) -> ObserverFactory | None:
    """What ``run_study(observe=...)`` takes for ``config``'s trackers; None when it asks none.

    Raises:
        ConfigError: see :func:`check_tracking`.
    """
    check_tracking(config)
    if not config.train.tensorboard:
        return None
    root = Path(config.output) / config.name

    def observe(job: Job) -> JobObserver:
        return TensorBoardObserver(root / TENSORBOARD_DIR / job.folder.relative_to(root))

    return observe


def _unit(x: Tensor) -> Tensor:
    """Each image of ``x (N, 1, H, W)`` scaled to [0, 1] on its own (constant images: 0)."""
    x = x.float()
    lo = x.amin((1, 2, 3), keepdim=True)
    span = x.amax((1, 2, 3), keepdim=True) - lo
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def samples_grid(samples: dict[str, Any]) -> Tensor:
    """One ``(1, N*H, 4*W)`` image in [0, 1]: per sample, image | saliency | keep | ADA image.

    Images and ADA images share one intensity scale per sample, so the erased square shows as
    the fill value; saliency is scaled per sample.
    """
    images, ada = samples["images"].float(), samples["ada_images"].float()
    both = _unit(torch.cat([images, ada], dim=3))  # one scale for an image and its ADA copy
    w = images.shape[3]
    columns = [both[..., :w], _unit(samples["saliency"]), samples["keep"].float(), both[..., w:]]
    rows = torch.cat(columns, dim=3)  # (N, 1, H, 4W)
    return torch.cat(list(rows), dim=1)  # (1, N*H, 4W)


class TensorBoardObserver:
    """Writes one job's epochs and samples figure to a TensorBoard log folder.

    Scalars (step = the job's epoch): ``loss/train``, ``val/<metric>`` for every validation
    metric of the epoch record, ``time/seconds_per_epoch``, ``time/images_per_s``; image
    ``samples`` at the job's end when its folder holds ``samples.pt``.

    Args:
        log_dir: the job's TensorBoard folder.
    """

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package, optional

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        self.writer.add_scalar("loss/train", float(record["loss"]), step)
        for name, value in record.get("metrics", {}).items():
            if value is not None:
                self.writer.add_scalar(f"val/{name}", float(value), step)
        self.writer.add_scalar("time/seconds_per_epoch", float(record["seconds"]), step)
        self.writer.add_scalar("time/images_per_s", float(record["images_per_s"]), step)
        self.writer.flush()  # a job that fails later keeps its epochs in TensorBoard too

    def on_end(self, folder: Path) -> None:
        from ada_core.engine.checkpoint import load_checkpoint

        try:
            path = Path(folder) / "samples.pt"
            if path.is_file():
                self.writer.add_image("samples", samples_grid(load_checkpoint(path)), 0)
        finally:
            self.writer.close()
