"""The attribution template (``Attributor.attribute`` / ``attribute_group``) and ``attribute_all``.

Toy attributors whose maps are known by hand (``|x|``, a gradient written out) check that the
base class does the shared work once, groups by ``share_key``, restores everything (also when
an attribution raises) and refuses bad maps with a message naming the attributor.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor

from ada_core import Attributor
from ada_core.attribution import attribute_all
from ada_core.errors import ContractError, InputError
from ada_core.testing.models import TinySegModel


class Absolute(Attributor):
    """``|x| * scale``: the map is known without any model."""

    name = "absolute"
    scale: ClassVar[float] = 1.0

    def _attribute(self, model, images, masks):
        return images.abs() * self.scale


class Grad(Attributor):
    """``|d sum(model(x)) / dx|`` (needs autograd), drawing global random numbers meanwhile."""

    name = "grad"

    def _attribute(self, model, images, masks):
        torch.rand(3)  # a plugin that uses the global RNG must not shift the caller's stream
        x = images.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x)
        return g.abs()


calls: list[tuple[str, list[str]]] = []


class Shared(Attributor):
    """Members of key ``test.shared`` are computed together; records each hook call."""

    name = "shared"
    share_key = "test.shared"
    scale: ClassVar[float] = 2.0

    def _attribute(self, model, images, masks):
        return images.abs() * self.scale

    @classmethod
    def _attribute_many(cls, attributors, model, images, masks):
        calls.append((cls.__name__, [a.name for a in attributors]))
        return [images.abs() * a.scale for a in attributors]


class SharedToo(Shared):
    name = "shared_too"
    scale = 3.0


class Returns(Attributor):
    """Returns whatever the test puts in ``out``."""

    name = "returns"
    out: Tensor | None = None

    def _attribute(self, model, images, masks):
        return self.out


@pytest.fixture
def model() -> TinySegModel:
    torch.manual_seed(0)
    return TinySegModel()


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return images, (images > 0).float()


def test_defaults_of_the_interface(model):
    a = Absolute()
    assert Attributor.control is False and Attributor.share_key is None
    assert a.set_seed(3) is None and a.check_model(model) is None
    assert a.state_dict() == {}


def test_attribute_is_the_group_of_one_and_groups_share_by_key(model, batch):
    images, masks = batch
    calls.clear()
    members = [Shared(), Absolute(), SharedToo(), Shared()]
    out = Attributor.attribute_group(members, model, images, masks)
    for a, saliency in zip(members, out):
        torch.testing.assert_close(saliency, images.abs() * a.scale, rtol=0, atol=0)
    # one hook call for the three members of key test.shared, in their order
    assert calls == [("Shared", ["shared", "shared_too", "shared"])]
    assert torch.equal(Shared().attribute(model, images, masks), images.abs() * 2)
    assert calls[-1] == ("Shared", ["shared"])
    assert Attributor.attribute_group([], model, images, masks) == []


def test_restores_modes_flags_grads_and_rng_also_when_a_member_raises(model, batch):
    class Fails(Attributor):
        name = "fails"

        def _attribute(self, model, images, masks):
            model(images)
            raise RuntimeError("member failed")

    model.train()
    model.bottleneck[1].eval()  # mixed modes must come back exactly, not as model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    seen: list[bool] = []
    handle = model.register_forward_pre_hook(lambda m, a: seen.append(m.training))
    with pytest.raises(RuntimeError, match="member failed"):
        Attributor.attribute_group([Grad(), Fails(), Grad()], model, *batch)
    handle.remove()
    assert seen and not any(seen), "the model must be in eval mode during attribution"
    assert model.training and not model.bottleneck[1].training and model.encoder[1].training
    assert [p.requires_grad for p in params] == [False] + [True] * (len(params) - 1)
    assert torch.equal(params[1].grad, torch.ones_like(params[1]))
    assert all(p.grad is None for i, p in enumerate(params) if i != 1)
    assert torch.equal(torch.get_rng_state(), rng)


def test_rng_state_restored_and_gradients_work_under_no_grad(model, batch):
    images, masks = batch
    model.eval()
    x = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(x).sum(), x)
    torch.manual_seed(1)
    rng = torch.get_rng_state()
    with torch.no_grad():
        out = Grad().attribute(model, images, masks)
    assert torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(out, expected.abs())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_restored(model, batch):
    class CudaDraw(Attributor):
        name = "cuda_draw"

        def _attribute(self, model, images, masks):
            return torch.rand(images.shape, device=images.device)

    images, masks = batch[0].cuda(), batch[1].cuda()
    torch.cuda.manual_seed(3)
    state = torch.cuda.get_rng_state(images.device)
    CudaDraw().attribute(model.cuda(), images, masks)
    assert torch.equal(torch.cuda.get_rng_state(images.device), state)


NEGATIVE = (
    r"'returns' returned negative saliency \(min -.*\) in sample\(s\) \[.*\] of 4; "
    r"expected values >= 0. Return a magnitude"
)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (lambda x: x[:, :, :-1], r"saliency of shape \(4, 1, 7, 8\), expected \(4, 1, 8, 8\)"),
        (lambda x: (x > 0).long(), "dtype torch.int64, expected a floating tensor"),
        (lambda x: x.abs().to("meta"), "returned saliency on meta, but the images are on cpu"),
        (lambda x: x.abs().index_fill(0, torch.tensor([2]), float("nan")),
         r"'returns' returned NaN or infinite saliency in sample\(s\) \[2\] of 4"),
        (lambda x: x, NEGATIVE),
        (lambda x: [x.abs()], "returned list, expected a"),
    ],
)
def test_bad_maps_raise_contract_errors_naming_the_attributor(model, batch, out, message):
    a = Returns()
    a.out = out(batch[0])
    with pytest.raises(ContractError, match=message):
        Attributor.attribute_group([Absolute(), a], model, *batch)


def test_maps_are_handed_on_as_float32(model, batch):
    a = Returns()
    a.out = batch[0].abs().double()
    out = a.attribute(model, *batch)
    assert out.dtype == torch.float32 and torch.equal(out, batch[0].abs())


def test_hook_returning_the_wrong_number_of_maps(model, batch):
    class Short(Shared):
        @classmethod
        def _attribute_many(cls, attributors, model, images, masks):
            return [images.abs()]

    with pytest.raises(ContractError, match=r"Short._attribute_many returned 1 maps for 2"):
        Attributor.attribute_group([Short(), Short()], model, *batch)


def test_public_entries_cannot_be_overridden():
    for entry in ("attribute", "attribute_group"):
        with pytest.raises(TypeError, match=rf"overrides Attributor.{entry}.*_attribute_many"):
            type("Bad", (Absolute,), {entry: lambda *a: None})


def test_bad_members_and_inputs(model, batch):
    images, masks = batch
    with pytest.raises(InputError, match=r"attributors\[1\] must be an Attributor, got str"):
        Attributor.attribute_group([Absolute(), "vanilla"], model, images, masks)
    with pytest.raises(InputError, match=r"attributors 'absolute', 'shared': masks shape"):
        Attributor.attribute_group([Absolute(), Shared()], model, images, masks[:2])
    with pytest.raises(InputError, match="model must be a SegModel, got str"):
        Absolute().attribute("tiny", images, masks)  # type: ignore[arg-type]


def test_attribute_all_batches_and_keeps_labels(model, batch):
    images, masks = batch
    calls.clear()
    members = {"b": Shared(), "a": Absolute(), "c": SharedToo()}
    out = attribute_all(members, model, images, masks, batch_size=3)
    assert list(out) == ["b", "a", "c"]
    for label, scale in (("b", 2.0), ("a", 1.0), ("c", 3.0)):
        assert torch.equal(out[label], images.abs() * scale)
    assert calls == [("Shared", ["shared", "shared_too"])] * 2  # two batches: 3 + 1 images
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        attribute_all(members, model, images, masks, batch_size=0)
    with pytest.raises(InputError, match=r"attributors\['x'\] must be an Attributor"):
        attribute_all({"x": 1}, model, images, masks)  # type: ignore[dict-item]
    assert attribute_all({}, model, images, masks) == {}

