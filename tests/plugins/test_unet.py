"""Tests of ``unet-paper`` (ada_unet.unet) against independent references."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ada_core.errors import ConfigError, InputError
from ada_core.plugins import load_plugins
from ada_core.testing import ModelContract

torch.set_num_threads(1)

# captum announces its own hooks and the inputs it marks as requiring gradients.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
]


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def small(registry, **params):
    torch.manual_seed(0)
    return registry.models.build("unet-paper", {"width": 4, **params})


# ---------------------------------------------------------------- architecture


def conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * c_out * k * k + c_out


def block_params(c_in: int, c_out: int) -> int:
    """Two conv3x3 (+bias) each followed by a BatchNorm (weight + bias)."""
    return conv_params(c_in, c_out) + 2 * c_out + conv_params(c_out, c_out) + 2 * c_out


def test_paper_parameter_count(registry):
    # Perone et al. / medicaltorch layer list, written out by hand.
    expected = (
        block_params(1, 64) + block_params(64, 128) + block_params(128, 256)  # down
        + block_params(256, 256)  # bottleneck
        + block_params(256 + 256, 256) + block_params(256 + 128, 128) + block_params(128 + 64, 64)
        + conv_params(64, 1)  # 3x3 head
    )
    model = registry.models.build("unet-paper", {})
    assert sum(p.numel() for p in model.parameters()) == expected
    bn_buffers = sum(b.numel() for n, b in model.named_buffers() if "running" in n)
    assert bn_buffers == 2 * (2 * (64 + 128 + 256 + 256 + 256 + 128 + 64))


def test_paper_defaults_and_layer_types(registry):
    model = registry.models.build("unet-paper", {})
    cfg = model.config
    assert (cfg.width, cfg.depth, cfg.dropout, cfg.bn_momentum) == (64, 3, 0.5, 0.4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(bns) == len(drops) == 14 and len(convs3) == 15
    assert all(m.momentum == 0.4 for m in bns) and all(m.p == 0.5 for m in drops)
    assert model.head.out_channels == 1 and model.head.kernel_size == (3, 3)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert model.input_multiple == 8


def test_bn_momentum_is_pytorch_convention(registry):
    """running = (1 - m) * running + m * batch, checked on the first BN by hand."""
    model = small(registry, bn_momentum=0.4, dropout=0.0)
    model.train()
    x = torch.randn(3, 1, 16, 16)
    block = model.down[0]
    pre_bn = block.relu1(block.conv1(x))
    batch_mean = pre_bn.mean(dim=(0, 2, 3))
    model(x)
    torch.testing.assert_close(block.bn1.running_mean, 0.6 * 0 + 0.4 * batch_mean)


def test_configurable_width_depth_dropout(registry):
    model = small(registry, width=3, depth=2, dropout=0.2, dropout_kind="element")
    assert model.input_multiple == 4
    assert [b.conv1.out_channels for b in model.down] == [3, 6]
    assert model.bottleneck.conv2.out_channels == 6
    assert [b.block.conv1.in_channels for b in model.up] == [12, 9]
    assert all(m.p == 0.2 for m in model.modules() if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout2d) for m in model.modules())


@pytest.mark.parametrize("size", [(32, 32), (16, 48), (64, 24), (8, 8)])
def test_output_shape(registry, size):
    model = small(registry).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size) and out.dtype == torch.float32


def test_output_is_logits_not_probabilities(registry):
    model = small(registry).eval()
    with torch.no_grad():
        model.head.bias.fill_(-5.0)  # a sigmoid inside would keep values in (0, 1)
        out = model(torch.randn(1, 1, 16, 16))
    assert (out < 0).any()


def test_eval_deterministic_train_dropout_active(registry):
    model = small(registry)
    x = torch.randn(2, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        torch.testing.assert_close(model(x)[1:], model(x[1:]), rtol=1e-5, atol=1e-5)
        model.train()
        assert not torch.allclose(model(x), model(x))


# ---------------------------------------------------------------- input sizes


def test_bad_size_error_names_valid_size_and_padding(registry):
    model = small(registry)
    with pytest.raises(InputError, match=r"30x44 is not a multiple of 8.*32x48.*pad"):
        model(torch.zeros(1, 1, 30, 44))


@pytest.mark.parametrize("mode", ["zeros", "replicate", "reflect"])
def test_pad_policy_matches_manual_pad_and_crop(registry, mode):
    padded_model = small(registry, pad=mode).eval()
    plain = small(registry).eval()
    x = torch.randn(2, 1, 30, 21)
    torch_mode = "constant" if mode == "zeros" else mode
    ref_in = F.pad(x, (1, 2, 1, 1), mode=torch_mode)  # 21 -> 24: 1 left, 2 right; 30 -> 32
    with torch.no_grad():
        out = padded_model(x)
        ref = plain(ref_in)[..., 1:31, 1:22]
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref)


def test_reflect_pad_too_small(registry):
    model = small(registry, pad="reflect", depth=3)
    with pytest.raises(InputError, match="too small for pad='reflect'"):
        model(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(1, 3, 16, 16), r"\(B, 1, H, W\).*\(1, 3, 16, 16\)"),
        (torch.zeros(1, 16, 16), r"\(B, 1, H, W\).*\(1, 16, 16\)"),
        (torch.zeros(1, 1, 16, 16, dtype=torch.int64), "floating point.*int64"),
    ],
)
def test_bad_input_errors(registry, x, match):
    with pytest.raises(InputError, match=match):
        small(registry)(x)


def test_input_not_a_tensor(registry):
    with pytest.raises(InputError, match="must be a torch.Tensor, got list"):
        small(registry)([[0.0]])


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"widht": 8}, r"widht: unknown parameter.*Did you mean 'width'"),
        ({"bn_momentum": 1.5}, r"bn_momentum"),
        ({"dropout": 1.0}, r"dropout"),
        ({"depth": 0}, r"depth"),
        ({"pad": "mirror"}, r"pad"),
    ],
)
def test_bad_config(registry, params, match):
    with pytest.raises(ConfigError, match=match):
        registry.models.build("unet-paper", params)


# ---------------------------------------------------------------- attribution


def test_relus_are_modules_used_once(registry):
    model = small(registry).eval()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 2 * (2 * 3 + 1) and not any(m.inplace for m in relus)
    calls = {id(m): 0 for m in relus}
    hooks = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls[id(m)] + 1)) for m in relus]

    class CountRelu(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (F.relu, torch.relu, torch.Tensor.relu):
                CountRelu.n += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), CountRelu():
        model(torch.randn(1, 1, 16, 16))
    for h in hooks:
        h.remove()
    assert set(calls.values()) == {1}
    assert CountRelu.n == len(relus)  # no functional relu outside the modules


def test_attribution_layers(registry):
    model = small(registry).eval()
    layers = model.attribution_layers()
    assert list(layers) == ["bottleneck", "decoder1", "decoder2", "decoder3", "head"]
    assert model.default_attribution_layer == "bottleneck"
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, o.shape)) for k, m in layers.items()]
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 40))
    for h in hooks:
        h.remove()
    assert shapes["bottleneck"] == (2, 16, 4, 5)
    assert shapes["decoder1"] == (2, 16, 8, 10)
    assert shapes["decoder2"] == (2, 8, 16, 20)
    assert shapes["decoder3"] == (2, 4, 32, 40)
    assert shapes["head"] == out.shape


def _guided_reference(model, x):
    """Guided Backprop by hand: clamp the gradient flowing into every ReLU output to >= 0."""
    def clamp_output_grad(module, inputs, output):
        output.register_hook(lambda g: g.clamp(min=0))

    hooks = [
        m.register_forward_hook(clamp_output_grad)
        for m in model.modules() if isinstance(m, nn.ReLU)
    ]
    x = x.clone().requires_grad_(True)
    try:
        (grad,) = torch.autograd.grad(torch.sigmoid(model(x)).sum(), x)
    finally:
        for h in hooks:
            h.remove()
    return grad


class _Scalar(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.sigmoid(self.model(x)).sum(dim=(1, 2, 3))


def test_guided_backprop_differs_from_vanilla(registry):
    from captum.attr import GuidedBackprop, Saliency

    model = small(registry, width=4).eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    wrapped = _Scalar(model)
    vanilla = Saliency(wrapped).attribute(x, abs=False)
    guided = GuidedBackprop(wrapped).attribute(x)
    x_req = x.clone().requires_grad_(True)
    (autograd_ref,) = torch.autograd.grad(wrapped(x_req).sum(), x_req)
    torch.testing.assert_close(vanilla, autograd_ref)
    torch.testing.assert_close(guided, _guided_reference(model, x))
    assert not torch.allclose(guided, vanilla, rtol=1e-2, atol=1e-6)
    assert (guided - vanilla).abs().mean() > 0.1 * vanilla.abs().mean()
    assert not any(p.grad is not None for p in model.parameters())


def test_deepcopy_and_state_dict_roundtrip(registry):
    model = small(registry).eval()
    clone = copy.deepcopy(model)
    other = small(registry, dropout=0.1).eval()
    other.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))
        torch.testing.assert_close(other(x), model(x))


# ---------------------------------------------------------------- contract


class TestPaperUNetContract(ModelContract):
    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return load_plugins().models.build("unet-paper", {"width": 4})
