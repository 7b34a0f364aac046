"""Small reference components used by the contract kit and by tests."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from ada_core.interfaces import ComponentConfig, SegModel

__all__ = ["TinySegModel", "TinySegModelConfig"]


class TinySegModelConfig(ComponentConfig):
    width: int = Field(4, ge=1, description="Channels of the first block.")


class TinySegModel(SegModel):
    """A two-level encoder-decoder with nn.ReLU modules, batch norm and dropout.

    Big enough to exercise every attribution method (a layer for GradCam, ReLUs for guided
    methods, batch norm for eval-mode checks), small enough for CPU tests.
    """

    name = "tiny"
    Config = TinySegModelConfig
    default_attribution_layer = "bottleneck"
    input_multiple = 2

    def __init__(self, config: TinySegModelConfig | None = None) -> None:
        super().__init__(config)
        w = self.config.width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.Dropout2d(0.1)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU()
        )
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.decoder = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.encoder(x)
        deep = self.up(self.bottleneck(self.pool(skip)))
        return self.head(self.decoder(torch.cat([skip, deep], dim=1)))

    def attribution_layers(self) -> dict[str, nn.Module]:
        return {"bottleneck": self.bottleneck, "decoder": self.decoder, "head": self.head}
