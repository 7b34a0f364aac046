"""The segmentation target: one differentiable scalar per sample from a logit map.

Autograd (like captum) explains a scalar; a U-Net outputs a map. :func:`target_scores`
reduces the map to one differentiable score per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ada_core import ComponentConfig, used_for, used_when

__all__ = ["Target", "TargetConfig", "target_scores"]

Target = Literal["foreground", "ground_truth", "all"]


class TargetConfig(ComponentConfig):
    """Settings every gradient attributor shares: what scalar to explain, and precision."""

    target: Target = Field(
        "foreground",
        description=(
            "Scalar explained per sample: 'foreground' = sum of the foreground probability over "
            "the pixels the model predicts as foreground (p > threshold); 'ground_truth' = sum "
            "of the foreground probability over the ground-truth mask; 'all' = sum of all "
            "logits. When the foreground or ground-truth region of a sample is empty, that "
            "sample falls back to 'all' (counted as 'zero_gradient')."
        ),
    )
    threshold: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Probability above which a pixel counts as predicted foreground.",
        json_schema_extra=used_when("target", "foreground"),
    )
    amp: bool = Field(
        False,
        description="bf16 autocast on CUDA (faster, less exact); on the CPU it has no effect "
        "(float32).",
        json_schema_extra=used_for("cuda"),
    )


def target_scores(
    logits: Tensor, masks: Tensor, target: Target, threshold: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Per-sample scalar to differentiate, and which samples fell back to the 'all' target.

    Args:
        logits: ``(B, 1, H, W)`` foreground logits (any float dtype; computed in float32).
        masks: ``(B, 1, H, W)`` ground truth in {0, 1} (used by ``target="ground_truth"``).
        target: ``"foreground"``, ``"ground_truth"`` or ``"all"``.
        threshold: foreground probability threshold for ``target="foreground"``.

    Returns:
        ``scores`` ``(B,)`` float32 (differentiable) and ``fallback`` ``(B,)`` bool: samples
        whose target region was empty, so their score is the sum of all logits instead (an
        empty region has zero gradient and would leave every mask window tied).
    """
    flat = logits.float().flatten(1)
    if target == "all":
        return flat.sum(1), torch.zeros(flat.shape[0], dtype=torch.bool, device=flat.device)
    prob = torch.sigmoid(flat)
    if target == "foreground":
        region = prob.detach() > threshold
    elif target == "ground_truth":
        region = masks.flatten(1) > 0.5
    else:  # pydantic validates the config; this guards direct calls
        raise ValueError(
            f"unknown target {target!r}; expected 'foreground', 'ground_truth' or 'all'"
        )
    empty = ~region.any(1)
    scores = torch.where(empty, flat.sum(1), (prob * region).sum(1))
    return scores, empty
