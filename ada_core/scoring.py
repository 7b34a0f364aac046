"""What a study scores on every slice: the metrics, with failures counted as results.

An empty prediction on a slice that has grey matter is a **failure**. Left to the metric
definitions, it would drop out of HSD, HD95 and PPV (undefined there), so a branch that fails
on a hard person could look better on those metrics than one that tries. Here a failure is a
result: ``fail`` is 100 on it (0 elsewhere; a person's mean is its failure rate, compared like
any metric), HSD and both HD95s take the worst possible value, the image diagonal in
millimetres, and PPV is 0. DSC and TPR are 0 by their definitions already.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor

from ada_core.metrics import DISTANCES, segmentation_metrics

__all__ = ["score_slices"]


def score_slices(pred: Tensor, target: Tensor, spacing: Tensor | Sequence[float],
                 metrics: Collection[str] | None = None) -> dict[str, Tensor]:  # fmt: skip
    """:func:`~ada_core.metrics.segmentation_metrics` with the failure rule (module docstring).

    Args:
        metrics: the metrics a caller reads (None: every one). The counts (DSC, TPR, TNR, PPV,
            fail) cost nothing and are always there; a surface distance not named is left out,
            so its boundary search (or percentile sort) is not paid for. A value does not
            depend on which others were asked for.

    Returns:
        The same ``(B,)`` tensors, and ``fail`` (float64, 0 or 100).
    """
    wanted = DISTANCES if metrics is None else tuple(d for d in DISTANCES if d in metrics)
    out = segmentation_metrics(pred, target, spacing, distances=wanted)
    missed = out["pred_empty"] & ~out["target_empty"]
    h, w = pred.shape[-2:]
    sp = torch.as_tensor(spacing, dtype=out["dsc"].dtype, device=out["dsc"].device)
    sp = sp.expand(pred.shape[0], 2) if sp.ndim == 1 else sp
    diagonal = ((sp * torch.tensor([h - 1, w - 1], dtype=sp.dtype, device=sp.device)) ** 2).sum(1).sqrt()
    for key in wanted:
        out[key] = torch.where(missed, diagonal, out[key])
    out["ppv"] = torch.where(missed, torch.zeros_like(out["ppv"]), out["ppv"])
    out["fail"] = missed.to(out["dsc"].dtype) * 100.0
    return out
