"""ada-captum attributors against independent references (hand autograd, formulas, hand cases)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ada_core.errors import ConfigError, ContractError, InputError
from ada_core.interfaces import SegModel
from ada_core.plugins import load_plugins
from ada_core.testing import AttributorContract
from ada_core.testing.models import TinySegModel

GRADIENT_METHODS = [
    "vanilla",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "input_x_gradient",
    "deconvnet",
]
ALL_METHODS = GRADIENT_METHODS + ["random"]


@pytest.fixture(scope="module")
def reg():
    return load_plugins()


@pytest.fixture
def model() -> TinySegModel:
    torch.manual_seed(0)
    return TinySegModel()


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(3, 1, 16, 16, generator=gen)
    masks = torch.zeros(3, 1, 16, 16)
    masks[:, :, 5:11, 4:12] = 1.0
    return images, masks


def hand_target(logits: Tensor, masks: Tensor, target: str) -> Tensor:
    """The documented targets, written out per sample with a loop (independent reference)."""
    scores = []
    for i in range(logits.shape[0]):
        lg, p = logits[i], torch.sigmoid(logits[i])
        if target == "all":
            scores.append(lg.sum())
            continue
        region = (p > 0.5) if target == "foreground" else (masks[i] > 0.5)
        scores.append((p * region).sum() if bool(region.any()) else lg.sum())
    return torch.stack(scores)


def hand_input_grad(model: nn.Module, images: Tensor, masks: Tensor, target: str) -> Tensor:
    model.eval()
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(hand_target(model(x), masks, target).sum(), x)
    return grad


# -- registration and the contract suite --------------------------------------------------
def test_all_methods_registered_by_the_plugin(reg):
    for name in ALL_METHODS:
        assert reg.attributors.entry(name).plugin.distribution == "ada-captum"


@pytest.fixture(params=ALL_METHODS)
def attributor(request, reg):
    return reg.attributors.build(request.param)


class TestCaptumContract(AttributorContract):
    pass


# -- hand references ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["foreground", "ground_truth", "all"])
def test_vanilla_and_input_x_gradient_equal_hand_autograd(reg, model, batch, target):
    images, masks = batch
    masks[1] = 0.0  # exercises the ground-truth fallback too
    grad = hand_input_grad(model, images, masks, target)
    vanilla = reg.attributors.build("vanilla", {"target": target}).attribute(model, images, masks)
    ixg = reg.attributors.build("input_x_gradient", {"target": target}).attribute(
        model, images, masks
    )
    assert grad.abs().amax() > 0
    torch.testing.assert_close(vanilla, grad.abs(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ixg, (images * grad).abs(), rtol=1e-5, atol=1e-7)


class KnownNet(SegModel):
    """x -> avgpool2 -> conv1x1 [1, -1] -> ReLU ("feat") -> conv1x1 [2, -3] -> nearest x2.

    logits = up(2 relu(P) - 3 relu(-P)), P = avgpool(x). With target 'all' every gradient is
    known by hand (see the tests).
    """

    name = "known"
    default_attribution_layer = "feat"
    input_multiple = 2

    def __init__(self, pool: bool = True) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()
        self.conv1 = nn.Conv2d(1, 2, 1, bias=False)
        self.feat = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 1, 1, bias=False)
        self.up = nn.Upsample(scale_factor=2, mode="nearest") if pool else nn.Identity()
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv2.weight.copy_(torch.tensor([2.0, -3.0]).view(1, 2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.conv2(self.feat(self.conv1(self.pool(x)))))

    def attribution_layers(self) -> dict[str, nn.Module]:
        return {"feat": self.feat, "conv1": self.conv1}


def _pool_by_hand(x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_gradcam_equals_formula_on_known_net(reg, upsample):
    # T = sum(up(2 relu(P) - 3 relu(-P))) = 4 sum_hw (2 A_0 - 3 A_1), so dT/dA_c = 4 w_c
    # everywhere, and cam = relu(8 A_0 - 12 A_1) = 8 relu(P).
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    cam = 8 * F.relu(_pool_by_hand(x))
    if upsample == "nearest":
        expected = cam.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    else:
        expected = F.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)
    gradcam = reg.attributors.build("gradcam", {"target": "all", "upsample": upsample})
    out = gradcam.attribute(KnownNet(), x, torch.zeros_like(x))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    (grouped,) = type(gradcam).attribute_group([gradcam], KnownNet(), x, torch.zeros_like(x))
    torch.testing.assert_close(grouped, expected, rtol=1e-5, atol=1e-6)


def test_guided_and_deconv_follow_the_relu_rules_on_known_net(reg):
    # logits = 2 relu(x) - 3 relu(-x) per pixel. By hand:
    #   vanilla |dT/dx| = 2 [x>0] + 3 [x<0]
    #   guided: channel 0 passes relu(2 [x>0]), channel 1 relu(-3 [x<0]) = 0  ->  2 [x>0]
    #   deconv: relu(grad_out) = (2, 0) whatever x                            ->  2
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    y = torch.zeros_like(x)
    pos = (x > 0).float()
    cases = {
        "vanilla": 2 * pos + 3 * (1 - pos),
        "guided_backprop": 2 * pos,
        "deconvnet": torch.full_like(x, 2.0),
    }
    attributors = {n: reg.attributors.build(n, {"target": "all"}) for n in cases}
    for name, expected in cases.items():
        out = attributors[name].attribute(KnownNet(pool=False), x, y)
        torch.testing.assert_close(out, expected, msg=name)
    grouped = type(attributors["vanilla"]).attribute_group(
        list(attributors.values()), KnownNet(pool=False), x, y
    )
    for (name, expected), out in zip(cases.items(), grouped):
        torch.testing.assert_close(out, expected, msg=f"{name} (shared pass)")


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(reg):
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    # guided: channel 0 passes 4*2 [P>0]/4 per pixel through the average pool -> 2 [P>0] up.
    guided = 2 * (_pool_by_hand(x) > 0).float().repeat_interleave(2, 2).repeat_interleave(2, 3)
    cam = F.interpolate(8 * F.relu(_pool_by_hand(x)), size=(8, 8), mode="bilinear")
    out = reg.attributors.build("guided_gradcam", {"target": "all"}).attribute(KnownNet(), x, x * 0)
    torch.testing.assert_close(out, guided * cam, rtol=1e-5, atol=1e-6)


def test_gradcam_on_tiny_model_equals_hook_formula(reg, model, batch):
    images, masks = batch
    model.eval()
    acts = {}
    handle = model.decoder.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    x = images.clone().requires_grad_(True)
    score = hand_target(model(x), masks, "foreground").sum()
    handle.remove()
    (g,) = torch.autograd.grad(score, acts["a"])
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True))
    expected = F.interpolate(cam, size=(16, 16), mode="bilinear")
    out = reg.attributors.build("gradcam", {"layer": "decoder"}).attribute(model, images, masks)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-7)
    default = reg.attributors.build("gradcam").attribute(model, images, masks)
    assert not torch.allclose(default, out), "layer override must change the explained layer"


# -- sharing ------------------------------------------------------------------------------
def test_attribute_all_equals_separate_calls_and_counts(reg, model, batch):
    from ada_core.attribution import attribute_all

    images, masks = batch
    masks[2] = 0.0
    specs = {n: (n, {}) for n in GRADIENT_METHODS}
    specs["vanilla_gt"] = ("vanilla", {"target": "ground_truth"})
    specs["gradcam_decoder"] = ("gradcam", {"layer": "decoder", "target": "ground_truth"})
    specs["random"] = ("random", {"seed": 3})
    shared = {k: reg.attributors.build(n, p) for k, (n, p) in specs.items()}
    alone = {k: reg.attributors.build(n, p) for k, (n, p) in specs.items()}
    out = attribute_all(shared, model, images, masks, batch_size=2)
    assert list(out) == list(specs)
    for key, attributor in alone.items():
        ref = torch.cat(
            [
                attributor.attribute(model, images[:2], masks[:2]),
                attributor.attribute(model, images[2:], masks[2:]),
            ]
        )
        torch.testing.assert_close(out[key], ref, rtol=1e-5, atol=1e-7, msg=key)
        assert shared[key].counters == attributor.counters, key
    assert shared["vanilla_gt"].counters["zero_gradient"] == 1


def test_attribute_all_rejects_bad_arguments(reg, model, batch):
    from ada_core.attribution import attribute_all

    with pytest.raises(InputError, match=r"attributors\['x'\] must be an Attributor, got str"):
        attribute_all({"x": "vanilla"}, model, *batch)  # type: ignore[dict-item]
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        attribute_all({"v": reg.attributors.build("vanilla")}, model, *batch, batch_size=0)
    assert attribute_all({}, model, *batch) == {}

    class Broken(type(reg.attributors.build("vanilla"))):
        @classmethod
        def attribute_group(cls, attributors, model, images, masks):
            return []

    with pytest.raises(ContractError, match="returned 0 maps for 2 attributors"):
        attribute_all({"a": Broken(), "b": Broken()}, model, *batch)


# -- the zero-gradient fallback -----------------------------------------------------------
def test_no_predicted_foreground_falls_back_to_all_logits_and_is_counted(reg, model, batch):
    images, masks = batch
    with torch.no_grad():
        model.head.bias.fill_(-50.0)  # sigmoid < 0.5 everywhere: no predicted foreground
    vanilla = reg.attributors.build("vanilla")
    out = vanilla.attribute(model, images, masks)
    assert vanilla.counters["zero_gradient"] == 3
    torch.testing.assert_close(out, hand_input_grad(model, images, masks, "all").abs())
    assert out.flatten(1).amax(1).min() > 0
    vanilla.attribute(model, images, masks)
    assert vanilla.counters["zero_gradient"] == 6


# -- guided methods must be guided --------------------------------------------------------
class NoReluNet(TinySegModel):
    name = "no-relu"

    def __init__(self) -> None:
        super().__init__()
        for seq in (self.encoder, self.bottleneck, self.decoder):
            for i, m in enumerate(seq):
                if isinstance(m, nn.ReLU):
                    seq[i] = nn.GELU()


class FunctionalReluNet(TinySegModel):
    name = "functional-relu"

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.ReLU()  # present but never called
        for seq in (self.encoder, self.bottleneck, self.decoder):
            for i, m in enumerate(seq):
                if isinstance(m, nn.ReLU):
                    seq[i] = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        skip = F.relu(self.encoder(x))
        deep = self.up(F.relu(self.bottleneck(self.pool(skip))))
        return self.head(F.relu(self.decoder(torch.cat([skip, deep], dim=1))))


@pytest.mark.parametrize("name", ["guided_backprop", "guided_gradcam", "deconvnet"])
@pytest.mark.parametrize("shared", [False, True])
def test_guided_methods_refuse_models_without_relu_modules(reg, batch, name, shared):
    a = reg.attributors.build(name)
    call = (
        (lambda m: type(a).attribute_group([a], m, *batch))
        if shared
        else (lambda m: a.attribute(m, *batch))
    )
    with pytest.raises(
        ContractError, match=rf"'{name}'.*'no-relu' has no nn.ReLU modules.*silently equal vanilla"
    ):
        call(NoReluNet())
    model = FunctionalReluNet()
    with pytest.raises(ContractError, match="none of them ran in forward"):
        call(model)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0


def test_guided_backprop_differs_from_vanilla_on_the_project_unet(reg):
    if "unet-paper" not in reg.models:
        pytest.skip("model 'unet-paper' (plugin ada-unet) is not registered yet")
    fields = reg.models.get("unet-paper").Config.model_fields
    params = {k: v for k, v in {"width": 4, "base_channels": 4, "depth": 2}.items() if k in fields}
    torch.manual_seed(0)
    unet = reg.models.build("unet-paper", params)
    m = max(1, unet.input_multiple)
    size = -(-32 // m) * m
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.zeros_like(x)
    vanilla = reg.attributors.build("vanilla", {"target": "all"}).attribute(unet, x, y)
    guided = reg.attributors.build("guided_backprop", {"target": "all"}).attribute(unet, x, y)
    rel = (guided - vanilla).abs().amax() / vanilla.abs().amax()
    assert rel > 0.05, f"guided backprop equals vanilla on unet-paper (max rel. diff {rel:.2e})"
    # every method on the U-Net: the shared pass equals the separate captum calls
    from ada_core.attribution import attribute_all

    attributors = {n: reg.attributors.build(n) for n in GRADIENT_METHODS}
    shared = attribute_all(attributors, unet, x, y)
    for name in GRADIENT_METHODS:
        alone = reg.attributors.build(name).attribute(unet, x, y)
        torch.testing.assert_close(shared[name], alone, rtol=1e-5, atol=1e-7, msg=name)


# -- hooks, in-place ReLUs, errors --------------------------------------------------------
class Explodes(TinySegModel):
    name = "explodes"

    def forward(self, x: Tensor) -> Tensor:
        self.encoder(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_hooks_removed_and_inplace_restored_even_on_error(reg, batch, name):
    model = Explodes()
    model.encoder[2].inplace = True
    a = reg.attributors.build(name)
    for call in (
        lambda: a.attribute(model, *batch),
        lambda: type(a).attribute_group([a], model, *batch),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            call()
        assert (
            sum(
                len(getattr(m, d))
                for m in model.modules()
                for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
            )
            == 0
        )
        assert model.encoder[2].inplace and model.training


def test_inplace_relus_work_and_give_the_same_saliency(reg, model, batch):
    ref = {n: reg.attributors.build(n).attribute(model, *batch) for n in GRADIENT_METHODS}
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    for name in GRADIENT_METHODS:
        torch.testing.assert_close(reg.attributors.build(name).attribute(model, *batch), ref[name])
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


@pytest.mark.filterwarnings("ignore:Couldn't appropriately interpolate GradCAM")
def test_gradcam_layer_errors(reg, model, batch):
    with pytest.raises(
        ConfigError,
        match=r"'gradcam': layer 'decodr'.*'bottleneck', 'decoder', 'head'.*Did you mean 'decoder'",
    ):
        reg.attributors.build("gradcam", {"layer": "decodr"}).attribute(model, *batch)

    class NoDefault(TinySegModel):
        name = "no-default"
        default_attribution_layer = "middle"

    with pytest.raises(
        ContractError,
        match=r"'no-default' declares default_attribution_layer 'middle'.*'layer' parameter",
    ):
        reg.attributors.build("guided_gradcam").attribute(NoDefault(), *batch)

    class Detached(TinySegModel):
        name = "detached"

        def attribution_layers(self):
            return {"bottleneck": nn.Conv2d(8, 8, 1)}  # not part of the network

    for shared in (False, True):
        a = reg.attributors.build("gradcam")
        with pytest.raises(ContractError, match="layer 'bottleneck' did not run during forward"):
            type(a).attribute_group([a], Detached(), *batch) if shared else a.attribute(
                Detached(), *batch
            )

    class Flat(TinySegModel):
        name = "flat"

        def __init__(self) -> None:
            super().__init__()
            self.flat = nn.Flatten(2)

        def forward(self, x: Tensor) -> Tensor:
            out = super().forward(x)
            return self.flat(out).view_as(out)

        def attribution_layers(self):
            return {"bottleneck": self.flat}

    for shared in (False, True):
        a = reg.attributors.build("guided_gradcam")
        with pytest.raises(
            ContractError, match=r"must output a \(B, C, h, w\) tensor, got \(3, 1, 256\)"
        ):
            type(a).attribute_group([a], Flat(), *batch) if shared else a.attribute(Flat(), *batch)
    conv = nn.Conv2d(1, 1, 1)  # not a SegModel
    with pytest.raises(InputError, match=r"'gradcam': model .* has no attribution_layers\(\)"):
        reg.attributors.build("gradcam").attribute(conv, *batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL_METHODS)
def test_bad_inputs_name_the_attributor(reg, model, batch, name):
    images, masks = batch
    a = reg.attributors.build(name)
    with pytest.raises(
        InputError,
        match=rf"attributor '{name}': images must have shape \(B, 1, H, W\), got \(3, 2, 16, 16\)",
    ):
        a.attribute(model, images.repeat(1, 2, 1, 1), masks)
    with pytest.raises(
        InputError, match=rf"attributor '{name}': images must be floating point, got torch.int64"
    ):
        a.attribute(model, images.long(), masks)
    bad = images.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(InputError, match=rf"attributor '{name}': images contains NaN"):
        type(a).attribute_group([a], model, bad, masks)


def test_config_errors(reg):
    with pytest.raises(
        ConfigError, match=r"params.target: Input should be 'foreground', 'ground_truth' or 'all'"
    ):
        reg.attributors.build("vanilla", {"target": "gm"})
    with pytest.raises(ConfigError, match=r"params.threshold"):
        reg.attributors.build("gradcam", {"threshold": 1.5})
    with pytest.raises(ConfigError, match=r"params.layer.*unknown parameter"):
        reg.attributors.build("vanilla", {"layer": "bottleneck"})


# -- random control and precision ---------------------------------------------------------
def test_random_is_uniform_seeded_and_replayable(reg, model, batch):
    a, b, c = (reg.attributors.build("random", {"seed": s}) for s in (7, 7, 8))
    first, second = a.attribute(model, *batch), a.attribute(model, *batch)
    assert torch.equal(first, b.attribute(model, *batch)) and torch.equal(
        second, b.attribute(model, *batch)
    )
    assert not torch.equal(first, second) and not torch.equal(first, c.attribute(model, *batch))
    assert first.min() >= 0 and first.max() < 1 and abs(float(first.mean()) - 0.5) < 0.05
    replay = reg.attributors.build("random", {"seed": 7})
    replay.calls = 1
    assert torch.equal(replay.attribute(model, *batch), second)


def test_amp_is_ignored_on_cpu(reg, model, batch):
    for name in ("vanilla", "gradcam"):
        exact = reg.attributors.build(name).attribute(model, *batch)
        torch.testing.assert_close(
            reg.attributors.build(name, {"amp": True}).attribute(model, *batch),
            exact,
            rtol=0,
            atol=0,
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_output_on_device_and_bf16_close(reg, model, batch):
    model, images, masks = model.cuda(), batch[0].cuda(), batch[1].cuda()
    for name in GRADIENT_METHODS:
        exact = reg.attributors.build(name).attribute(model, images, masks)
        fast = reg.attributors.build(name, {"amp": True}).attribute(model, images, masks)
        assert exact.device == images.device and fast.dtype == torch.float32
        corr = torch.corrcoef(torch.stack([exact.flatten(), fast.flatten()]))[0, 1]
        assert corr > 0.9, f"{name}: bf16 saliency correlates {corr:.3f} with float32"
