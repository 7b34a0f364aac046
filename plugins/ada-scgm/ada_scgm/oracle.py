"""The oracle: a planted-effect control whose saliency is the phantom's context cue itself.

Not an interpretability method. The phantom draws its cue (``context_cue``, with
``cue_anchor = "gm"``) at ``cue_offset_mm`` from the middle of the grey-matter butterfly,
wherever the GM moves. The oracle knows that rule: it takes the middle of the GM as the
centroid of each image's ground-truth mask (which every attributor receives), adds the offset,
and returns a Gaussian of the cue's radius centred there. The window mask builder then erases
the cue, and ADA with the oracle removes exactly the shortcut the phantom planted, whatever the
model does. A study with the oracle, ``random`` and ``none`` therefore has a known answer (see
configs/positive-control.toml); with the cue switched off (``context_cue = false``) it erases a
patch of bone where the cue would be, and the answer is "no difference".

The oracle ignores the cord's rotation (at most 0.2 rad in the phantom, which moves the cue by
up to 1.7 mm at the default offset), and the GM centroid is not exactly the butterfly's middle;
on 144 unseen slices at 0.5 mm the 8-pixel window it picks covers 99% of the cue's pixels
(tests/plugins/test_oracle.py measures it against renderings with and without the cue).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from ada_core import Attributor, ComponentConfig, SegModel
from ada_scgm.phantom import PhantomConfig

__all__ = ["OracleAttributor", "OracleConfig", "oracle_saliency"]

_PHANTOM = PhantomConfig.model_fields


class OracleConfig(ComponentConfig):
    """Where the phantom draws its cue, in the terms of the data set's own settings."""

    cue_offset_mm: tuple[float, float] = Field(
        _PHANTOM["cue_offset_mm"].default,
        description="The phantom's data.params.cue_offset_mm (rows, cols in mm from the GM's "
        "middle; the data set must use cue_anchor = 'gm'). Default: the phantom's default.",
    )
    cue_radius_mm: float = Field(
        _PHANTOM["cue_radius_mm"].default, gt=0,
        description="The phantom's data.params.cue_radius_mm: the Gaussian's standard deviation.",
    )
    spacing: float = Field(
        0.25, gt=0,
        description="Pixel size in mm of the images the oracle sees: data.preprocess.spacing "
        "(default: its default, 0.25).",
    )


def oracle_saliency(masks: Tensor, offset_px: tuple[float, float], sigma_px: float) -> Tensor:
    """A Gaussian at each mask's centroid plus ``offset_px``; zero for an empty mask.

    Args:
        masks: ``(B, 1, H, W)`` ground truth in {0, 1}.
        offset_px: ``(rows, cols)`` from the centroid to the Gaussian's centre, in pixels.
        sigma_px: its standard deviation in pixels.

    Returns:
        ``(B, 1, H, W)`` float32 in ``[0, 1]``.
    """
    m = masks[:, 0].double()
    h, w = m.shape[-2:]
    rows = torch.arange(h, dtype=torch.float64, device=m.device)
    cols = torch.arange(w, dtype=torch.float64, device=m.device)
    n = m.sum((1, 2))
    safe = n.clamp(min=1)
    r0 = (m.sum(2) * rows).sum(1) / safe + offset_px[0]
    c0 = (m.sum(1) * cols).sum(1) / safe + offset_px[1]
    dr = (rows[None] - r0[:, None]) ** 2  # (B, H)
    dc = (cols[None] - c0[:, None]) ** 2  # (B, W)
    out = torch.exp(-(dr[:, :, None] + dc[:, None, :]) / (2 * sigma_px**2))
    return (out * (n > 0)[:, None, None]).float()[:, None]


class OracleAttributor(Attributor):
    """ADA that erases the phantom's cue: the known answer of the positive control.

    Model-independent and deterministic. An image without ground truth has no anchor: its map
    is zero (counted in ``counters["no_ground_truth"]``) and the mask builder's tie rule
    applies.
    """

    name = "oracle"
    Config: ClassVar[type[OracleConfig]] = OracleConfig
    config: OracleConfig
    planted = True
    title = "the oracle (erases the planted cue)"

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        c = self.config
        offset = (c.cue_offset_mm[0] / c.spacing, c.cue_offset_mm[1] / c.spacing)
        self.counters["no_ground_truth"] += int((masks.flatten(1).amax(1) == 0).sum())
        return oracle_saliency(masks, offset, c.cue_radius_mm / c.spacing).to(images.device)
