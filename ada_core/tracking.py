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
from ada_core.runfolder import EpochRecord, JobPaths, RunLayout, read_samples

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig
    from ada_core.engine.jobs import Job
    from ada_core.engine.study import JobObserver, ObserverFactory

__all__ = ["TensorBoardObserver", "check_tracking", "observer_factory", "samples_grid"]


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
    layout = RunLayout(Path(config.output) / config.name)

    def observe(job: Job) -> JobObserver:
        # a branch continues its standard phase: its first epoch is step standard_epochs + 1
        offset = 0 if job.branch is None else config.train.standard_epochs
        return TensorBoardObserver(layout.tensorboard_of(job.paths), step_offset=offset)

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

    Scalars (step = the epoch counted from the start of training: a branch's first epoch
    follows its standard phase's last): ``loss/train``, ``val/<metric>`` for every validation
    metric of the epoch record, ``time/seconds_per_epoch``, ``time/images_per_s``; image
    ``samples`` at the job's end when its folder holds ``samples.pt``.

    Args:
        log_dir: the job's TensorBoard folder.
        step_offset: added to the job's epoch numbers (a branch: the standard epochs).
    """

    def __init__(self, log_dir: Path, step_offset: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package, optional

        self.log_dir = Path(log_dir)
        self.offset = int(step_offset)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch(self, record: EpochRecord) -> None:
        step = self.offset + record.epoch
        if record.loss is not None:
            self.writer.add_scalar("loss/train", record.loss, step)
        for name, value in record.metrics.items():
            if value is not None:
                self.writer.add_scalar(f"val/{name}", value, step)
        self.writer.add_scalar("time/seconds_per_epoch", record.seconds, step)
        if record.images_per_s is not None:
            self.writer.add_scalar("time/images_per_s", record.images_per_s, step)
        self.writer.flush()  # a job that fails later keeps its epochs in TensorBoard too

    def on_end(self, job: JobPaths) -> None:
        try:
            if job.samples.is_file():
                s = read_samples(job.samples)
                grid = {k: getattr(s, k) for k in ("images", "ada_images", "saliency", "keep")}
                self.writer.add_image("samples", samples_grid(grid), 0)
        finally:
            self.writer.close()
