"""ada-captum attributors against independent references: captum, hand autograd, formulas.

Production computes every gradient method with one shared autograd pass (alone = a group of
one); captum (``captum_reference``) and the hand references here check it, alone and in groups.
Errors, hooks, models and the random control: ``test_captum_guards.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from plugins.captum_reference import METHODS as GRADIENT_METHODS
from plugins.captum_reference import captum_attribution
from torch import Tensor, nn

from ada_core import Attributor
from ada_core.attribution import attribute_all
from ada_core.errors import ContractError, InputError
from ada_core.interfaces import SegModel
from ada_core.testing import AttributorContract

ALL_METHODS = [*GRADIENT_METHODS, "random"]

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")


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


def captum_ref(spec: tuple[str, dict], model: nn.Module, images: Tensor, masks: Tensor) -> Tensor:
    name, params = spec
    return captum_attribution(name, model, images, masks, **params)


# -- registration and the contract suite --------------------------------------------------
def test_all_methods_registered_by_the_plugin(reg):
    for name in ALL_METHODS:
        assert reg.attributors.entry(name).plugin.distribution == "ada-captum"


@pytest.fixture(params=ALL_METHODS)
def attributor(request, reg):
    return reg.attributors.build(request.param)


class TestCaptumContract(AttributorContract):
    pass


# -- captum as the reference ----------------------------------------------------------------
@pytest.mark.parametrize("target", ["foreground", "ground_truth", "all"])
@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_every_method_equals_captum(reg, model, batch, name, target):
    images, masks = batch
    masks[1] = 0.0  # exercises the ground-truth fallback too
    ref = captum_attribution(name, model, images, masks, target=target)
    assert ref.amax() > 0, "a degenerate reference would make the comparison vacuous"
    model.train()  # the attributor, not the caller, must put the model in eval mode
    out = reg.attributors.build(name, {"target": target}).attribute(model, images, masks)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
@pytest.mark.parametrize("layer", ["bottleneck", "decoder", "head"])
@pytest.mark.parametrize("name", ["gradcam", "guided_gradcam"])
def test_layer_methods_equal_captum_at_every_layer(reg, model, batch, name, layer, upsample):
    params = {"layer": layer, "upsample": upsample}
    ref = captum_attribution(name, model, *batch, **params)
    out = reg.attributors.build(name, params).attribute(model, *batch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)


GROUPS = {
    "all six": [(n, {}) for n in GRADIENT_METHODS],
    "mixed settings": [
        ("guided_gradcam", {"layer": "decoder", "target": "ground_truth"}),
        ("vanilla", {}),
        ("vanilla", {"target": "all"}),
        ("gradcam", {"layer": "head", "upsample": "nearest"}),
        ("deconvnet", {"target": "ground_truth"}),
        ("input_x_gradient", {"target": "all"}),
    ],
    "with the random control": [("random", {"seed": 2}), ("gradcam", {}), ("guided_backprop", {})],
    # one layer feeds the other: the pass keeps the input as the leaf
    "gradcam at two layers": [("gradcam", {"layer": "bottleneck"}), ("gradcam", {"layer": "decoder"})],
}


@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("group", list(GROUPS))
def test_groups_equal_captum(reg, model, batch, group, batch_size):
    images, masks = batch
    masks[2] = 0.0
    specs = GROUPS[group]
    members = {f"{i}:{n}": reg.attributors.build(n, p) for i, (n, p) in enumerate(specs)}
    out = attribute_all(members, model, images, masks, batch_size=batch_size)
    assert list(out) == list(members)
    for (label, saliency), spec in zip(out.items(), specs):
        if spec[0] == "random":
            continue
        torch.testing.assert_close(
            saliency, captum_ref(spec, model, images, masks), rtol=1e-5, atol=1e-7, msg=label
        )


def test_group_entry_on_the_base_equals_captum_in_any_order(reg, model, batch):
    specs = [(n, {}) for n in reversed(GRADIENT_METHODS)]
    members = [reg.attributors.build(n, p) for n, p in specs]
    for saliency, spec in zip(Attributor.attribute_group(members, model, *batch), specs):
        torch.testing.assert_close(saliency, captum_ref(spec, model, *batch), msg=spec[0])


# -- hand references ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["foreground", "ground_truth", "all"])
def test_vanilla_and_input_x_gradient_equal_hand_autograd(reg, model, batch, target):
    images, masks = batch
    masks[1] = 0.0  # exercises the ground-truth fallback too
    grad = hand_input_grad(model, images, masks, target)
    vanilla = reg.attributors.build("vanilla", {"target": target})
    ixg = reg.attributors.build("input_x_gradient", {"target": target})
    assert grad.abs().amax() > 0
    for out in (vanilla.attribute(model, images, masks),
                Attributor.attribute_group([ixg, vanilla], model, images, masks)[1]):
        torch.testing.assert_close(out, grad.abs(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        ixg.attribute(model, images, masks), (images * grad).abs(), rtol=1e-5, atol=1e-7
    )


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
        self.check_input_size(*x.shape[-2:])
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
    ref = captum_attribution("gradcam", KnownNet(), x, x * 0, target="all", upsample=upsample)
    torch.testing.assert_close(ref, expected, rtol=1e-5, atol=1e-6)  # the reference agrees


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
    grouped = Attributor.attribute_group(list(attributors.values()), KnownNet(pool=False), x, y)
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


@pytest.mark.parametrize(("name", "upstream_backward"), [("gradcam", False), ("vanilla", True),
                                                          ("guided_gradcam", True)])  # fmt: skip
def test_gradcam_alone_stops_backward_at_its_layer(reg, model, batch, name, upstream_backward):
    """GradCam reads only its layer's gradient: nothing before the layer is differentiated
    (the input included); methods that read the input gradient still go all the way."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    calls = []
    handle = first.register_full_backward_hook(lambda *a: calls.append(1))
    try:
        out = reg.attributors.build(name, {"layer": "decoder"} if "gradcam" in name else {}).attribute(
            model, *batch)  # fmt: skip
    finally:
        handle.remove()
    assert bool(calls) == upstream_backward
    params = {"layer": "decoder"} if "gradcam" in name else {}
    torch.testing.assert_close(out, captum_attribution(name, model, *batch, **params), rtol=1e-5, atol=1e-7)


# -- batching, grouping and counters -----------------------------------------------------
def test_attribute_all_equals_separate_calls_and_counts(reg, model, batch):
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
    with pytest.raises(InputError, match=r"attributors\['x'\] must be an Attributor, got str"):
        attribute_all({"x": "vanilla"}, model, *batch)  # type: ignore[dict-item]
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        attribute_all({"v": reg.attributors.build("vanilla")}, model, *batch, batch_size=0)
    assert attribute_all({}, model, *batch) == {}

    class Broken(type(reg.attributors.build("vanilla"))):
        @classmethod
        def _attribute_many(cls, attributors, model, images, masks):
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


# -- the project's U-Net -------------------------------------------------------------------
def test_every_method_equals_captum_on_the_project_unet(reg):
    if "unet-paper" not in reg.models:
        pytest.skip("model 'unet-paper' (plugin ada-unet) is not registered")
    torch.manual_seed(0)
    unet = reg.models.build("unet-paper", {"width": 4})
    m = max(1, unet.input_multiple)
    size = -(-32 // m) * m
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.zeros_like(x)
    y[:, :, size // 3 : size // 2, size // 3 : size // 2] = 1.0
    vanilla = reg.attributors.build("vanilla", {"target": "all"}).attribute(unet, x, y)
    guided = reg.attributors.build("guided_backprop", {"target": "all"}).attribute(unet, x, y)
    rel = (guided - vanilla).abs().amax() / vanilla.abs().amax()
    assert rel > 0.05, f"guided backprop equals vanilla on unet-paper (max rel. diff {rel:.2e})"
    for target in ("all", "ground_truth"):
        attributors = {n: reg.attributors.build(n, {"target": target}) for n in GRADIENT_METHODS}
        shared = attribute_all(attributors, unet, x, y)
        for name in GRADIENT_METHODS:
            ref = captum_attribution(name, unet, x, y, target=target)
            torch.testing.assert_close(shared[name], ref, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_captum_and_bf16_close(reg, model, batch):
    model, images, masks = model.cuda(), batch[0].cuda(), batch[1].cuda()
    torch.manual_seed(0)
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    exact = attribute_all({n: reg.attributors.build(n) for n in ALL_METHODS}, model, images, masks)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    for name in GRADIENT_METHODS:
        ref = captum_attribution(name, model, images, masks)
        torch.testing.assert_close(exact[name], ref, rtol=1e-4, atol=1e-6, msg=name)
        fast = reg.attributors.build(name, {"amp": True}).attribute(model, images, masks)
        assert exact[name].device == images.device and fast.dtype == torch.float32
        corr = torch.corrcoef(torch.stack([exact[name].flatten(), fast.flatten()]))[0, 1]
        assert corr > 0.9, f"{name}: bf16 saliency correlates {corr:.3f} with float32"
