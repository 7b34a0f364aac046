"""``unet-paper``: the U-Net of Perone et al. used by ADA (Santos et al. 2021).

The layer list follows medicaltorch's ``Unet`` (``medicaltorch/models.py``), which ADA's
reference set-up builds on:

* ``depth`` (default 3) down-sampling levels with ``width * 2**i`` channels (64, 128, 256),
  each a block of two ``conv3x3 -> ReLU -> BatchNorm -> Dropout`` followed by 2x2 max-pooling;
* a bottleneck block with as many channels as the deepest level (256);
* ``depth`` up-sampling levels: bilinear x2 up-sampling (``align_corners=True``), concatenation
  ``[up-sampled, skip]`` and one block of two convs with ``skip`` channels;
* a ``conv3x3`` head to one logit channel. The sigmoid belongs to the loss / prediction.

Batch-norm momentum follows the **PyTorch convention**
(``running = (1 - momentum) * running + momentum * batch``): medicaltorch passes its
``bn_momentum`` straight to ``nn.BatchNorm2d``, and ADA's augmentation settings come from the
same library. The paper's 0.4 therefore means "40 % of each new batch statistic"; the Keras
equivalent (``moving = momentum * moving + (1 - momentum) * batch``) is ``1 - 0.4 = 0.6``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ada_core import ComponentConfig, SegModel, used_unless
from ada_unet._sizing import PAD_DESCRIPTION, PadMode, crop_output, fit_input

__all__ = ["PaperUNet", "PaperUNetConfig"]


class PaperUNetConfig(ComponentConfig):
    """Settings of :class:`PaperUNet` (defaults: the paper's)."""

    width: int = Field(64, ge=1, le=1024, description="Channels of the first level; level i has width * 2**i.")
    depth: int = Field(3, ge=1, le=6, description="Number of down-sampling (and up-sampling) levels; the total stride is 2**depth.")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout probability after every conv's batch norm.")
    dropout_kind: Literal["channel", "element"] = Field(
        "channel",
        description="'channel' drops whole feature maps (nn.Dropout2d, as medicaltorch); 'element' drops single activations (nn.Dropout).",
        json_schema_extra=used_unless("dropout", 0),
    )
    bn_momentum: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="Batch-norm momentum in PyTorch convention: running = (1 - m) * running + m * batch. The Keras value is 1 - m.",
    )
    pad: PadMode = Field("error", description=PAD_DESCRIPTION)


class _ConvBlock(nn.Sequential):
    """Two ``conv3x3 -> ReLU -> BatchNorm -> Dropout``: ``(B, c_in, H, W) -> (B, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, config: PaperUNetConfig) -> None:
        drop = nn.Dropout2d if config.dropout_kind == "channel" else nn.Dropout
        layers: dict[str, nn.Module] = {}
        for i, c in enumerate((c_in, c_out), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c, c_out, kernel_size=3, padding=1)
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"bn{i}"] = nn.BatchNorm2d(c_out, momentum=config.bn_momentum)
            layers[f"drop{i}"] = drop(config.dropout)
        super().__init__(OrderedDict(layers))


class _UpBlock(nn.Module):
    """Bilinear x2 up-sampling, concatenation with the skip, a :class:`_ConvBlock`.

    ``(B, c_deep, h, w), (B, c_skip, 2h, 2w) -> (B, c_skip, 2h, 2w)``.
    """

    def __init__(self, c_deep: int, c_skip: int, config: PaperUNetConfig) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.block = _ConvBlock(c_deep + c_skip, c_skip, config)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        return self.block(torch.cat([self.up(deep), skip], dim=1))


class PaperUNet(SegModel):
    """The paper's U-Net: ``forward(x (B, 1, H, W)) -> logits (B, 1, H, W)``.

    H and W must be multiples of ``2**depth`` (8 by default; the paper's 200 x 200 crops are),
    unless ``pad`` lets the model pad. Every ReLU is its own ``nn.ReLU`` module, used once,
    so guided methods see all of them.

    Attribution layers: ``"bottleneck"`` (the GradCam default, ``(B, width * 2**(depth-1),
    H / 2**depth, W / 2**depth)``), ``"decoder1"`` ... ``"decoder<depth>"`` in the order they run
    (``decoder1`` is the deepest, ``decoder<depth>`` has full resolution and ``width``
    channels) and ``"head"`` (the logits).
    """

    name: ClassVar[str] = "unet-paper"
    Config: ClassVar[type[ComponentConfig]] = PaperUNetConfig
    default_attribution_layer: ClassVar[str] = "bottleneck"
    input_multiple: ClassVar[int] = 8  # the default depth 3; instances set 2**depth

    config: PaperUNetConfig

    def __init__(self, config: PaperUNetConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.input_multiple = 2**cfg.depth
        channels = [cfg.width * 2**i for i in range(cfg.depth)]
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.down.append(_ConvBlock(c_in, c, cfg))
            self.pools.append(nn.MaxPool2d(2))
            c_in = c
        self.bottleneck = _ConvBlock(c_in, c_in, cfg)
        self.up = nn.ModuleList()
        c_deep = c_in
        for c_skip in reversed(channels):
            self.up.append(_UpBlock(c_deep, c_skip, cfg))
            c_deep = c_skip
        self.head = nn.Conv2d(cfg.width, 1, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, 1, H, W)`` of images ``(B, 1, H, W)``."""
        x, padding = fit_input(self, x, self.config.pad)
        skips = []
        for block, pool in zip(self.down, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return crop_output(self.head(x), padding)

    def attribution_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {"bottleneck": self.bottleneck}
        for i, block in enumerate(self.up, start=1):
            layers[f"decoder{i}"] = block
        layers["head"] = self.head
        return layers
