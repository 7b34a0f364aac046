"""``smp``: any segmentation-models-pytorch architecture and encoder, by name.

One input channel, one output logit channel, no pretrained download ever: ``encoder_weights``
is None (random initialisation) or the path of a local weights file. With ``guided_safe``
(the default) every ReLU becomes its own non-inplace ``nn.ReLU`` module (see
:mod:`ada_unet._guided`), so guided attribution methods are correct.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from ada_core import (ComponentConfig, ConfigError, DataError, SegModel, Unused, closest, suggest,
                      used_if)
from ada_unet._guided import GuidedReport, make_relus_distinct
from ada_unet._sizing import PAD_DESCRIPTION, PadMode, crop_output, fit_input

__all__ = ["SmpModel", "SmpModelConfig", "smp_architectures", "smp_encoders"]

# Arguments the wrapper sets itself; arch_options may not override them.
_RESERVED = {"encoder_name", "encoder_depth", "encoder_weights", "in_channels", "classes",
             "activation", "aux_params", "decoder_channels"}


def smp_architectures() -> dict[str, type[nn.Module]]:
    """segmentation-models-pytorch architectures by class name (``"Unet"``, ``"FPN"``, ...)."""
    import segmentation_models_pytorch as smp

    return {cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}


def smp_encoders() -> list[str]:
    """Encoder names segmentation-models-pytorch knows (``tu-<timm model>`` also works)."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


class SmpModelConfig(ComponentConfig):
    """Settings of :class:`SmpModel`."""

    arch: str = Field("Unet", description="segmentation-models-pytorch architecture: Unet, UnetPlusPlus, FPN, DeepLabV3Plus, Linknet, ... (case-insensitive).")
    encoder: str = Field("resnet18", description="Encoder name from smp.encoders.get_encoder_names(), or 'tu-<timm model name>'.")
    encoder_depth: int = Field(5, ge=1, le=5, description="Encoder stages used (the total stride is 2**encoder_depth for most architectures); some architectures need 3 or more.")
    encoder_weights: str | None = Field(None, description="None (random initialisation, no network access) or the path of a local .pt/.pth/.safetensors state dict, either of the encoder or of the whole model; a 3-channel first conv is summed to 1 channel.")
    decoder_channels: tuple[int, ...] | None = Field(None, description="Decoder channels for architectures that take them (Unet: one per encoder stage); None keeps smp's default.", json_schema_extra=used_if("`arch` takes a decoder_channels argument (Unet, UnetPlusPlus, MAnet, DeepLabV3, ...)"))
    arch_options: dict[str, Any] = Field(default_factory=dict, description="Further keyword arguments of the smp architecture (e.g. decoder_attention_type='scse'), checked against its signature.")
    pad: PadMode = Field("error", description=PAD_DESCRIPTION)
    guided_safe: bool = Field(True, description="Give every ReLU call its own non-inplace nn.ReLU module (needed by Guided Backprop / Guided GradCam); False keeps smp's modules as built.")

    def _inactive(self) -> list[Unused]:
        if self.decoder_channels is None and "decoder_channels" not in self.model_fields_set:
            return []
        archs = smp_architectures()
        accepted = _arguments(archs[self.arch])
        if "decoder_channels" in accepted:
            return []
        takers = sorted(n for n, c in archs.items() if "decoder_channels" in _arguments(c))
        return [Unused("decoder_channels", None,
                       why=f"{{prefix}}arch = {self.arch!r} has no decoder_channels argument "
                           f"(its arguments: {', '.join(sorted(accepted - _RESERVED))}; set "
                           "them through {prefix}arch_options)",
                       fix=f"set {{prefix}}arch to one that takes it "
                           f"({', '.join(takers)})")]  # fmt: skip

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        archs = smp_architectures()
        by_lower = {name.lower(): name for name in archs}
        if value.lower() in by_lower:
            return by_lower[value.lower()]
        raise ValueError(f"unknown smp architecture {value!r}. {suggest(value, archs)}")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        if value.startswith("tu-"):
            import timm

            model = value[3:].split(".")[0]
            if timm.is_model(model):
                return value
            near = closest(model, timm.list_models())
            hint = f" Did you mean 'tu-{near}'?" if near else ""
            raise ValueError(
                f"unknown timm encoder {value!r}: no timm model named {model!r} "
                f"(see timm.list_models()).{hint}"
            )
        encoders = smp_encoders()
        if value in encoders:
            return value
        raise ValueError(
            f"unknown smp encoder {value!r}. {suggest(value, encoders)} Any timm model also "
            "works as 'tu-<name>'."
        )


class SmpModel(SegModel):
    """A segmentation-models-pytorch network: ``forward(x (B,1,H,W)) -> logits (B,1,H,W)``.

    ``self.net`` is the smp model itself. Attribution layers: ``"encoder"`` (the GradCam
    default: the deepest encoder feature map, ``(B, C, H / stride, W / stride)``, through an
    ``nn.Identity`` tap), ``"decoder"`` (the decoder's output) and ``"head"`` (the logits).
    ``input_multiple`` is the encoder's output stride, or 1 for architectures that take any
    size (smp's ``Unet``).

    Attributes:
        guided_report: what the guided-safe fix changed (None when ``guided_safe`` is False).
    """

    name: ClassVar[str] = "smp"
    Config: ClassVar[type[ComponentConfig]] = SmpModelConfig
    default_attribution_layer: ClassVar[str] = "encoder"
    input_multiple: ClassVar[int] = 32

    config: SmpModelConfig

    def __init__(self, config: SmpModelConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.net = _build_net(cfg)
        self._dpt = type(self.net).__name__ == "DPT"
        stride = int(getattr(self.net.encoder, "output_stride", 2**cfg.encoder_depth))
        divisible = getattr(self.net, "requires_divisible_input_shape", True)
        self.input_multiple = stride if divisible else 1
        self.encoder_tap = nn.Identity()
        if cfg.encoder_weights is not None:
            load_weights(self.net, Path(cfg.encoder_weights))
        self.guided_report: GuidedReport | None = None
        side = 2 * max(stride, 16)
        probe = torch.zeros(1, 1, side, side)
        try:
            if cfg.guided_safe:
                self.guided_report = make_relus_distinct(self.net, probe)
            _check_output_shape(self, probe)
        except ConfigError as e:
            raise ConfigError(f"model 'smp' ({cfg.arch}, {cfg.encoder}): {e}") from e
        except Exception as e:
            raise ConfigError(
                f"model 'smp' ({cfg.arch}, {cfg.encoder}, encoder_depth={cfg.encoder_depth}): "
                f"a probe forward pass on a {side}x{side} image failed ({type(e).__name__}: "
                f"{e}); check the architecture options, or set guided_safe=False"
            ) from e

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, 1, H, W)`` of images ``(B, 1, H, W)``; same maths as ``self.net(x)``."""
        x, padding = fit_input(self, x, self.config.pad)
        net = self.net
        if self._dpt:
            features, prefix_tokens = net.encoder(x)
            features = [*features[:-1], self.encoder_tap(features[-1])]
            decoded = net.decoder(features, prefix_tokens)
        else:
            features = net.encoder(x)
            features = [*features[:-1], self.encoder_tap(features[-1])]
            decoded = net.decoder(features)
        return crop_output(net.segmentation_head(decoded), padding)

    def attribution_layers(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder_tap, "decoder": self.net.decoder,
                "head": self.net.segmentation_head}


def _check_output_shape(model: SmpModel, probe: Tensor) -> None:
    """Raise ConfigError unless ``model`` maps ``probe`` to logits of the same size."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(probe)
    finally:
        model.train(was_training)
    if out.shape != probe.shape:
        cfg = model.config
        raise ConfigError(
            f"with encoder_depth={cfg.encoder_depth} it maps a {tuple(probe.shape)} input to "
            f"{tuple(out.shape)} logits instead of {tuple(probe.shape)}; "
            "use the architecture's default encoder_depth (5)"
        )


def _arguments(cls: type[nn.Module]) -> set[str]:
    """The keyword arguments an smp architecture's constructor takes."""
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"self"}


def _build_net(cfg: SmpModelConfig) -> nn.Module:
    """The smp model of ``cfg``: 1 input channel, 1 class, no activation, no download."""
    from segmentation_models_pytorch.base.model import SegmentationModel
    from segmentation_models_pytorch.decoders.dpt.model import DPT

    cls = smp_architectures()[cfg.arch]
    if cls.forward not in (SegmentationModel.forward, DPT.forward):
        raise ConfigError(
            f"model 'smp': architecture {cfg.arch!r} has its own forward, which this wrapper "
            "does not know; pick another architecture or write a SegModel plugin for it"
        )
    accepted = _arguments(cls)
    kwargs: dict[str, Any] = dict(
        encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth, encoder_weights=None,
        in_channels=1, classes=1, activation=None,
    )
    if cfg.decoder_channels is not None:  # the config refuses it where the arch has none
        kwargs["decoder_channels"] = list(cfg.decoder_channels)
    for key, value in cfg.arch_options.items():
        if key in _RESERVED or key not in accepted:
            why = "is set by the wrapper" if key in _RESERVED else "is not an argument of it"
            raise ConfigError(
                f"model 'smp': arch_options.{key} {why} for architecture {cfg.arch!r}. "
                f"{suggest(key, accepted - _RESERVED)}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except Exception as e:  # smp raises ValueError, KeyError, TypeError, AssertionError...
        raise ConfigError(
            f"model 'smp': segmentation-models-pytorch could not build arch={cfg.arch!r} with "
            f"encoder={cfg.encoder!r}, encoder_depth={cfg.encoder_depth}: {type(e).__name__}: {e}"
        ) from e


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ConfigError(
            f"model 'smp': encoder_weights file {str(path)!r} does not exist; give the path of "
            "a local state dict (.pt, .pth or .safetensors) or None for random weights"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"encoder_weights file {str(path)!r} could not be read: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(
            f"encoder_weights file {str(path)!r} does not hold a state dict (a mapping of names "
            "to tensors); save one with torch.save(model.state_dict(), path)"
        )
    return state


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a local state dict into ``net`` (whole model) or ``net.encoder`` (encoder only).

    Keys may carry the prefix ``net.`` (a saved :class:`SmpModel`); an encoder-only file may
    carry ``encoder.``. A first-conv weight with 3
    input channels where the model has 1 is summed over the channels (smp's own rule).

    Raises:
        ConfigError: the file does not exist.
        DataError: the file is unreadable or its keys / shapes do not fit the model.
    """
    state = _read_state_dict(path)
    state = {k.removeprefix("net."): v for k, v in state.items()}
    whole = any(k.startswith(("decoder.", "segmentation_head.")) for k in state)
    if not whole and state and all(k.startswith("encoder.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
    target = net if whole else net.encoder
    own = target.state_dict()
    for key, value in list(state.items()):
        want = own.get(key)
        if (want is not None and value.ndim == 4 and want.ndim == 4 and want.shape[1] == 1
                and value.shape[1] == 3 and value.shape[0] == want.shape[0]
                and value.shape[2:] == want.shape[2:]):
            state[key] = value.sum(dim=1, keepdim=True)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state) if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        what = "whole model" if whole else "encoder"
        parts = [f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("shape mismatch", shapes)) if items]
        raise DataError(
            f"encoder_weights file {str(path)!r} does not fit the {what} of this smp model; "
            + "; ".join(parts)
            + ". Check that arch, encoder and encoder_depth match the ones the weights were saved with"
        )
    target.load_state_dict(state)
