"""Scoring a phase's selected checkpoint: one tidy row per slice and evaluation set.

Sets (``set`` column of ``results.csv``):

- ``val``: the validation part, which selected the checkpoint (biased upwards; labelled so);
- ``test``: the held-out test part, when the split has one (never used for selection);
- ``robustness``: Algorithm 2 on the reported part (test, else validation): every ``Z x Z``
  square zeroed in turn, ``eval_batch_size`` copies per forward; a slice's value is the mean
  over its occluded copies. Only the metrics the study reports on it are computed
  (:attr:`Evaluation.metrics <ada_core.engine.plan.Evaluation>`); the others are NaN;
- ``robustness_near``: the change against the same checkpoint's un-occluded metric, averaged
  over the squares that touch the ground truth dilated by ``margin_mm`` (negative DSC = worse);
- ``context``: the paper's Figure 1 probe: every pixel farther than ``context_margin_mm`` from
  the ground truth set to the fill value;
- the label of every extra evaluation set (``[[evaluate]]``);
- ``val@ada<k>`` (branches): validation after ADA epoch ``k``, read from the phase folder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ada_core.data import SliceSet
from ada_core.engine.loop import Runtime, evaluate_slices, predict
from ada_core.engine.plan import Evaluation
from ada_core.engine.runlog import Progress, Silent
from ada_core.interfaces import SegModel
from ada_core.metrics import summarize
from ada_core.scoring import score_slices
from ada_core.quantities import METRICS
from ada_core.robustness import iter_occlusions, num_occlusions
from ada_core.runfolder import (
    ConvergenceFile,
    JobPaths,
    Positions,
    RowBlock,
    read_record,
)

__all__ = ["ScoredSet", "convergence_blocks", "neighbourhood", "score_checkpoint"]


class ScoredSet:
    """Per-slice metrics of one set: ``values[metric]`` is ``(N,)`` float64 (NaN: undefined)."""

    def __init__(self, name: str, data: SliceSet, values: dict[str, Tensor]) -> None:
        self.name = name
        self.person = list(data.group)
        self.subject = list(data.subject)
        self.site = list(data.site)
        self.slice = data.slice_index.cpu().tolist()
        nan = torch.full((len(data),), math.nan, dtype=torch.float64)
        # A metric the set does not compute (see Evaluation.metrics) is NaN: not estimated.
        self.values = {m: values[m].double().cpu() if m in values else nan for m in METRICS}
        self.positions: Positions | None = None

    def summary(self) -> dict[str, float]:
        return {k: float(v) for k, v in summarize(self.values).items()}

    def rows(self) -> RowBlock:
        return RowBlock(self.name, self.person, self.subject, self.site, self.slice,
                        {m: v.tolist() for m, v in self.values.items()})  # fmt: skip


def neighbourhood(masks: Tensor, spacing: Tensor, margin_mm: float) -> Tensor:
    """``(N, 1, H, W)`` bool: pixels within ``margin_mm`` of the ground truth (an ellipse in
    pixels when rows and columns differ in size), the ground truth included."""
    gt = masks > 0.5
    if margin_mm <= 0:
        return gt
    sy, sx = (float(v) for v in spacing.double().mean(0))
    ry, rx = int(math.floor(margin_mm / sy)), int(math.floor(margin_mm / sx))
    yy = torch.arange(-ry, ry + 1, dtype=torch.float64)[:, None] * sy
    xx = torch.arange(-rx, rx + 1, dtype=torch.float64)[None, :] * sx
    disk = ((yy**2 + xx**2) <= margin_mm**2 + 1e-9).to(masks.dtype).to(masks.device)
    hit = F.conv2d(gt.to(masks.dtype), disk[None, None], padding=(ry, rx))
    return hit > 0.5


def _robustness(
    model: SegModel, data: SliceSet, clean: dict[str, Tensor], ev: Evaluation, bs: int,
    runtime: Runtime, progress: Progress | Silent,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Positions]:  # fmt: skip
    n = len(data)
    z = ev.size
    h, w = data.images.shape[-2:]
    grid = (-(-h // z), -(-w // z))
    near = neighbourhood(data.masks, data.spacing, ev.margin_mm).float()
    # cell (i, j) of image k touches the neighbourhood iff its square holds a pixel of it
    near_cells = F.max_pool2d(near, z, z, ceil_mode=True)[:, 0].bool().cpu()
    metrics = ev.metrics
    sums = {m: torch.zeros(n, dtype=torch.float64) for m in metrics}
    counts = {m: torch.zeros(n, dtype=torch.float64) for m in metrics}
    near_sums = {m: torch.zeros(n, dtype=torch.float64) for m in metrics}
    near_counts = {m: torch.zeros(n, dtype=torch.float64) for m in metrics}
    pos_sum = torch.zeros(grid[0] * grid[1], dtype=torch.float64)
    pos_change = torch.zeros_like(pos_sum)
    pos_n = torch.zeros_like(pos_sum)
    for batch in iter_occlusions(data.images, data.masks, z, bs):
        pred = predict(model, batch.images, bs, runtime)
        idx = batch.image_index.to(data.spacing.device)
        out = score_slices(pred, batch.masks, data.spacing[idx], metrics)
        img = batch.image_index.cpu()
        r, c = batch.position[:, 0].cpu(), batch.position[:, 1].cpu()
        touches = near_cells[img, r // z, c // z]
        for m in metrics:
            v = out[m].double().cpu()
            ok = ~torch.isnan(v)
            sums[m].index_add_(0, img[ok], v[ok])
            counts[m].index_add_(0, img[ok], torch.ones_like(v[ok]))
            d = v - clean[m][img]
            okd = ~torch.isnan(d) & touches
            near_sums[m].index_add_(0, img[okd], d[okd])
            near_counts[m].index_add_(0, img[okd], torch.ones_like(d[okd]))
        cell = (r // z) * grid[1] + c // z
        dsc = out["dsc"].double().cpu()
        change = dsc - clean["dsc"][img]
        ok = ~torch.isnan(change)
        pos_sum.index_add_(0, cell[ok], dsc[ok])
        pos_change.index_add_(0, cell[ok], change[ok])
        pos_n.index_add_(0, cell[ok], torch.ones_like(dsc[ok]))
        progress.update()
    progress.close()
    rob = {m: sums[m] / counts[m] for m in metrics}  # 0/0 -> NaN: nothing defined
    near_change = {m: near_sums[m] / near_counts[m] for m in metrics}
    def cells(t: Tensor) -> list[list[float | None]]:
        return [[None if v != v else v for v in row] for row in t.reshape(grid).tolist()]

    positions = Positions(
        size=z, grid=grid, dsc=cells(pos_sum / pos_n), dsc_change=cells(pos_change / pos_n),
        near_squares_per_slice=float(
            near_counts["dsc"].sum() / max(1.0, float((near_counts["dsc"] > 0).sum()))),
    )  # fmt: skip
    return rob, near_change, positions


def _context(model: SegModel, data: SliceSet, ev: Evaluation, bs: int, runtime: Runtime) -> dict:
    keep = neighbourhood(data.masks, data.spacing, float(ev.context_margin_mm or 0.0))
    probe = SliceSet(
        torch.where(keep, data.images, torch.full_like(data.images, ev.fill)),
        data.masks, data.spacing, data.slice_index, data.subject, data.site, data.group,
    )  # fmt: skip
    return evaluate_slices(model, probe, bs, runtime)


def score_checkpoint(
    model: SegModel,
    parts: dict[str, SliceSet],
    extra: dict[str, SliceSet],
    ev: Evaluation,
    batch_size: int,
    runtime: Runtime,
    *,
    label: str = "",
    quiet: bool = True,
) -> list[ScoredSet]:
    """Every evaluation set of one checkpoint (see the module docstring).

    Args:
        model: the selected weights, on the device.
        parts: ``{"val": ..., "test": ...}`` of the replicate's fold (test may be empty).
        extra: label -> extra evaluation set.
        ev: the evaluation settings.
        label: how the progress of the robustness set (its batches) names the job.
        quiet: no progress bar (log lines instead, as for training).
    """
    scored = []
    for name in ("val", "test"):
        if name in parts and len(parts[name]):
            scored.append(ScoredSet(name, parts[name], evaluate_slices(model, parts[name], batch_size, runtime)))
    report = scored[-1]
    data = parts[report.name]
    if ev.robustness:
        n = num_occlusions(len(data), *data.images.shape[-2:], ev.size)
        bar = Progress(-(-n // batch_size), f"{label} robustness".strip(), quiet, unit="batch")
        rob, near, positions = _robustness(model, data, report.values, ev, batch_size, runtime,
                                           bar)  # fmt: skip
        s = ScoredSet("robustness", data, rob)
        s.positions = positions
        scored.append(s)
        scored.append(ScoredSet("robustness_near", data, near))
    if ev.context_margin_mm is not None:
        scored.append(ScoredSet("context", data, _context(model, data, ev, batch_size, runtime)))
    for label, slices in extra.items():
        scored.append(ScoredSet(label, slices, evaluate_slices(model, slices, batch_size, runtime)))
    return scored


def convergence_blocks(job: JobPaths) -> list[RowBlock]:
    """The ``val@ada<k>`` rows of every convergence file of a branch folder."""
    blocks = []
    for k, path in job.convergence_files():
        f = read_record(path, ConvergenceFile)
        values = {m: [math.nan if v is None else v for v in f.values[m]] for m in METRICS}
        blocks.append(RowBlock(f"val@ada{k}", f.person, f.subject, f.site, f.slice, values))
    return blocks
