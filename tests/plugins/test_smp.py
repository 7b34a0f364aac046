"""Tests of the ``smp`` model (ada_unet.smp_model, ada_unet._guided)."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ada_core.errors import ConfigError, DataError, InputError
from ada_core.plugins import load_plugins
from ada_core.testing import ModelContract

torch.set_num_threads(1)

UNET = {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def build(registry, **params):
    torch.manual_seed(0)
    return registry.models.build("smp", params)


@pytest.fixture(scope="module")
def unet(registry):
    return build(registry, **UNET).eval()


def test_builds_and_runs_offline(registry, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    model = build(registry).eval()  # the defaults: Unet / resnet18 / depth 5
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 1, 64, 64)
    assert model.net.encoder.conv1.in_channels == 1


@pytest.mark.parametrize(
    "params",
    [UNET, {"arch": "FPN", "encoder_depth": 5}, {"arch": "DeepLabV3Plus"}, {"arch": "unetplusplus", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}],
    ids=["Unet", "FPN", "DeepLabV3Plus", "UnetPlusPlus"],
)
def test_forward_equals_smp_forward(registry, params):
    model = build(registry, **params).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        out = model(x)
        ref = model.net(x)  # smp's own forward, untouched by the taps
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref)


def test_guided_safe_relus_are_distinct_and_keep_the_maths(registry):
    fixed = build(registry, **UNET).eval()
    raw = build(registry, **UNET, guided_safe=False).eval()
    raw_relus = [m for m in raw.modules() if isinstance(m, nn.ReLU)]
    assert any(m.inplace for m in raw_relus)  # smp builds in-place ReLUs ...
    calls: dict[int, int] = {}

    def count(m, i, o):
        calls[id(m)] = calls.get(id(m), 0) + 1

    def run(model):
        calls.clear()
        hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.ReLU)]
        with torch.no_grad():
            out = model(torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
        for h in hooks:
            h.remove()
        return out, dict(calls)

    raw_out, raw_calls = run(raw)
    assert max(raw_calls.values()) > 1  # ... and reuses them (torchvision BasicBlock)
    fixed_out, fixed_calls = run(fixed)
    assert set(fixed_calls.values()) == {1}
    assert sum(fixed_calls.values()) == sum(raw_calls.values())
    assert not any(m.inplace for m in fixed.modules() if isinstance(m, nn.ReLU))
    torch.testing.assert_close(fixed_out, raw_out)
    assert fixed.state_dict().keys() == raw.state_dict().keys()
    report = fixed.guided_report
    assert "encoder.layer1.0.relu" in report.split and report.functional_relus == 0
    assert raw.guided_report is None


def test_guided_report_lists_other_activations(registry):
    model = build(registry, arch="Unet", encoder="mobilenet_v2", encoder_depth=3, decoder_channels=[32, 16, 8])
    assert model.guided_report.other_activations.get("ReLU6", 0) > 0


def test_guided_backprop_matches_hand_reference(registry, unet):
    from captum.attr import GuidedBackprop

    class Scalar(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return torch.sigmoid(self.model(x)).sum(dim=(1, 2, 3))

    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with pytest.warns(UserWarning):
        guided = GuidedBackprop(Scalar(unet)).attribute(x)

    def clamp_output_grad(module, inputs, output):
        output.register_hook(lambda g: g.clamp(min=0))

    hooks = [m.register_forward_hook(clamp_output_grad) for m in unet.modules() if isinstance(m, nn.ReLU)]
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(Scalar(unet)(xr).sum(), xr)
    for h in hooks:
        h.remove()
    xv = x.clone().requires_grad_(True)
    (vanilla,) = torch.autograd.grad(Scalar(unet)(xv).sum(), xv)
    torch.testing.assert_close(guided, ref)
    assert not torch.allclose(guided, vanilla, rtol=1e-2, atol=1e-6)


# ---------------------------------------------------------------- names and options


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"arch": "Unett"}, r"unknown smp architecture 'Unett'.*'DeepLabV3Plus'.*'FPN'.*Did you mean 'Unet'"),
        ({"encoder": "resnt18"}, r"unknown smp encoder 'resnt18'.*'resnet34'.*Did you mean 'resnet18'"),
        ({"encoder": "tu-resnt18"}, r"no timm model named 'resnt18'.*Did you mean 'tu-resnet18'"),
        ({"encoder_depth": 7}, r"encoder_depth"),
        ({"encoder_weigths": None}, r"unknown parameter.*Did you mean 'encoder_weights'"),
    ],
)
def test_bad_names(registry, params, match):
    with pytest.raises(ConfigError, match=match):
        registry.models.build("smp", params)


def test_decoder_channels_on_arch_without_them(registry):
    with pytest.raises(ConfigError, match=r"'FPN' has no decoder_channels.*decoder_pyramid_channels"):
        registry.models.build("smp", {"arch": "FPN", "decoder_channels": [8]})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"decoder_atention_type": "scse"}, r"arch_options.decoder_atention_type is not an argument.*Did you mean 'decoder_attention_type'"),
        ({"classes": 3}, r"arch_options.classes is set by the wrapper"),
    ],
)
def test_bad_arch_options(registry, options, match):
    with pytest.raises(ConfigError, match=match):
        registry.models.build("smp", {**UNET, "arch_options": options})


def test_arch_options_are_passed(registry):
    params = {**UNET, "decoder_channels": [64, 32, 16]}
    model = build(registry, **params, arch_options={"decoder_attention_type": "scse"})
    assert any("SCSE" in type(m).__name__ for m in model.modules())


def test_wrong_output_size_is_caught(registry):
    # smp's FPN up-samples by a fixed factor 4 that assumes five encoder stages.
    with pytest.raises(ConfigError, match=r"encoder_depth=3 it maps a \(1, 1, 32, 32\) input to \(1, 1, 128, 128\)"):
        registry.models.build("smp", {"arch": "FPN", "encoder_depth": 3})


def test_smp_build_failure_is_wrapped(registry):
    # smp's Unet needs one decoder channel per encoder stage.
    with pytest.raises(ConfigError, match=r"could not build arch='Unet'.*encoder_depth=3"):
        registry.models.build("smp", {**UNET, "decoder_channels": [8, 8]})


# ---------------------------------------------------------------- input sizes


def test_stride_error_and_padding(registry):
    fpn = build(registry, arch="FPN").eval()
    assert fpn.input_multiple == 32
    with pytest.raises(InputError, match=r"48x40 is not a multiple of 32.*64x64.*pad"):
        fpn(torch.zeros(1, 1, 48, 40))
    padded = registry.models.build("smp", {"arch": "FPN", "pad": "zeros"}).eval()
    padded.load_state_dict(fpn.state_dict())
    x = torch.randn(1, 1, 48, 40)
    with torch.no_grad():
        out = padded(x)
        ref = fpn(F.pad(x, (12, 12, 8, 8)))[..., 8:56, 12:52]
    torch.testing.assert_close(out, ref)


def test_unet_takes_any_size(unet):
    assert unet.input_multiple == 1
    with torch.no_grad():
        assert unet(torch.randn(1, 1, 36, 28)).shape == (1, 1, 36, 28)


def test_bad_channel_count(unet):
    with pytest.raises(InputError, match=r"\(B, 1, H, W\).*\(1, 3, 32, 32\)"):
        unet(torch.zeros(1, 3, 32, 32))


# ---------------------------------------------------------------- attribution layers


def test_attribution_layers(registry):
    model = build(registry, arch="FPN").eval()
    layers = model.attribution_layers()
    assert list(layers) == ["encoder", "decoder", "head"] and model.default_attribution_layer == "encoder"
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, o.shape)) for k, m in layers.items()]
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 96))
    for h in hooks:
        h.remove()
    assert shapes["encoder"] == (2, 512, 2, 3)  # resnet18's last stage, stride 32
    assert shapes["decoder"][:1] == (2,) and shapes["head"] == out.shape


# ---------------------------------------------------------------- local weights


def test_encoder_weights_missing_file(registry, tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match=f"encoder_weights file '{path}' does not exist"):
        registry.models.build("smp", {**UNET, "encoder_weights": str(path)})


def test_encoder_weights_unreadable(registry, tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=f"'{path}' could not be read"):
        registry.models.build("smp", {**UNET, "encoder_weights": str(path)})


def test_encoder_weights_rgb_encoder_file(registry, tmp_path):
    """An ImageNet-style 3-channel encoder state dict: conv1 summed over RGB (smp's rule)."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(1)
    rgb = smp.encoders.get_encoder("resnet18", in_channels=3, depth=3, weights=None)
    path = tmp_path / "encoder.pth"
    torch.save(rgb.state_dict(), path)
    model = build(registry, **UNET, encoder_weights=str(path))
    torch.testing.assert_close(model.net.encoder.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.net.encoder.layer2[1].conv2.weight, rgb.layer2[1].conv2.weight)


def test_whole_model_weights_roundtrip(registry, tmp_path, unet):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(path))
    torch.manual_seed(5)
    loaded = registry.models.build("smp", {**UNET, "encoder_weights": str(path)}).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), unet(x))


def test_weights_for_another_encoder(registry, tmp_path):
    import segmentation_models_pytorch as smp

    other = smp.encoders.get_encoder("resnet34", in_channels=1, depth=3, weights=None)
    path = tmp_path / "r34.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(DataError, match=r"does not fit the encoder.*unexpected.*encoder_depth"):
        registry.models.build("smp", {**UNET, "encoder_weights": str(path)})


def test_deepcopy(unet):
    clone = copy.deepcopy(unet)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), unet(x))


# ---------------------------------------------------------------- contract


class TestSmpUnetContract(ModelContract):
    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return load_plugins().models.build("smp", UNET)


class TestSmpFPNContract(ModelContract):
    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return load_plugins().models.build("smp", {"arch": "FPN"})
