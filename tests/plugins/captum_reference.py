"""captum as the independent reference for ada-captum's attributors (tests and bench only).

Production computes every gradient method with one shared autograd pass; here each method is
one plain captum call on a model wrapped so that captum sees one scalar per sample. The target
is re-implemented per sample with a loop, so neither the shared pass nor ada-captum's
``target_scores`` is reused.
"""

from __future__ import annotations

import warnings

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    LayerAttribution,
    LayerGradCam,
    Saliency,
)
from torch import Tensor, nn

__all__ = ["METHODS", "captum_attribution", "loop_target"]

METHODS = (
    "vanilla",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "input_x_gradient",
    "deconvnet",
)


def loop_target(logits: Tensor, masks: Tensor, target: str, threshold: float = 0.5) -> Tensor:
    """The documented per-sample targets ``(B,)``, written out with a loop over samples."""
    scores = []
    for i in range(logits.shape[0]):
        lg = logits[i].float()
        p = torch.sigmoid(lg)
        if target == "all":
            scores.append(lg.sum())
            continue
        region = (p.detach() > threshold) if target == "foreground" else (masks[i] > 0.5)
        scores.append((p * region).sum() if bool(region.any()) else lg.sum())
    return torch.stack(scores)


class _ScalarForward(nn.Module):
    """``model`` followed by the target: ``(B, 1, H, W) -> (B,)``. A module holding the model,
    so that captum's guided methods find its ``nn.ReLU`` modules."""

    def __init__(self, model: nn.Module, masks: Tensor, target: str, threshold: float) -> None:
        super().__init__()
        self.model, self.masks, self.target, self.threshold = model, masks, target, threshold

    def forward(self, x: Tensor) -> Tensor:
        return loop_target(self.model(x), self.masks, self.target, self.threshold)


def captum_attribution(
    method: str,
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    *,
    target: str = "foreground",
    threshold: float = 0.5,
    layer: str | None = None,
    upsample: str = "bilinear",
) -> Tensor:
    """What ada-captum's ``method`` must return, computed by captum.

    Args:
        method: one of :data:`METHODS`.
        model: a SegModel (put in eval mode here; its mode is not restored).
        images: ``(B, 1, H, W)``.
        masks: ``(B, 1, H, W)`` ground truth in {0, 1}.
        target, threshold, layer, upsample: the attributor's parameters.

    Returns:
        ``(B, 1, H, W)`` float32 magnitude of captum's attribution (GradCam: its relu'd,
        upsampled map).
    """
    model.eval()
    forward = _ScalarForward(model, masks, target, threshold)
    x = images.detach().clone().requires_grad_(True)
    module = None
    if method in ("gradcam", "guided_gradcam"):
        module = model.attribution_layers()[layer or model.default_attribution_layer]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        if method == "vanilla":
            out = Saliency(forward).attribute(x, abs=True)
        elif method == "input_x_gradient":
            out = InputXGradient(forward).attribute(x)
        elif method == "guided_backprop":
            out = GuidedBackprop(forward).attribute(x)
        elif method == "deconvnet":
            out = Deconvolution(forward).attribute(x)
        elif method == "gradcam":
            cam = LayerGradCam(forward, module).attribute(x, relu_attributions=True)
            out = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), upsample)
        elif method == "guided_gradcam":
            out = GuidedGradCam(forward, module).attribute(x, interpolate_mode=upsample)
        else:
            raise ValueError(f"no captum reference for {method!r}; expected one of {METHODS}")
    return out.detach().float().abs()
