"""The attributor contract: one fixture (``attributor``) and an empty subclass run every check.

Uses the fixtures ``contract_model`` and ``contract_images`` (override them for your own
model or sizes). The group path is checked with groups of several members, and state
restoration also when one member (or the model) raises.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ada_core.errors import InputError
from ada_core.interfaces import Attributor, SegModel
from ada_core.testing._base import ContractBase, check_class, expect_error, hook_count

__all__ = ["AttributorContract"]

_MEMBERS = 3  # group size of the group checks


class _KitFailure(RuntimeError):
    """Raised on purpose by the kit (a failing model or group member)."""


class _FailingAttributor(Attributor):
    """A group member that always raises, to check restoration around the others."""

    name = "contract-kit-failing"

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        model(images)
        raise _KitFailure("the contract kit's failing group member")


@contextlib.contextmanager
def _model_fails_at(model: nn.Module, call: int) -> Iterator[list[int]]:
    """Make ``model``'s ``call``-th forward (from 1) raise; yields the forward count."""
    calls = [0]

    def hook(module: nn.Module, args: Any) -> None:
        calls[0] += 1
        if calls[0] == call:
            raise _KitFailure(f"the contract kit's model failure at forward call {call}")

    handle = model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def _mixed_state(model: nn.Module) -> dict[str, Any]:
    """Put ``model`` in a state that only exact restoration preserves; return a snapshot."""
    model.train()
    modules = list(model.modules())
    modules[-1].eval()  # mixed modes: a blanket model.train(flag) does not restore them
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.requires_grad_(i % 3 != 2)
        p.grad = torch.full_like(p, float(i)) if i % 2 else None
    return _snapshot(model)


def _snapshot(model: nn.Module) -> dict[str, Any]:
    params = list(model.named_parameters())
    return {
        "train/eval mode per module": [(n, m.training) for n, m in model.named_modules()],
        "parameter requires_grad": [(n, p.requires_grad) for n, p in params],
        "parameter .grad": [(n, None if p.grad is None else p.grad.clone()) for n, p in params],
        "hook count": hook_count(model),
    }


def _assert_restored(before: dict[str, Any], model: nn.Module, when: str) -> None:
    after = _snapshot(model)
    for key in ("train/eval mode per module", "parameter requires_grad", "hook count"):
        assert after[key] == before[key], (
            f"attributor contract ({when}): {key} changed: before {before[key]}, after "
            f"{after[key]}. Attributor.attribute_group restores mode and flags itself; hooks "
            "a plugin registers must be removed through their handles in a finally block"
        )
    for (name, g0), (_, g1) in zip(before["parameter .grad"], after["parameter .grad"]):
        same = (g0 is None and g1 is None) or (
            g0 is not None and g1 is not None and torch.equal(g0, g1)
        )
        assert same, (
            f"attributor contract ({when}): .grad of parameter {name!r} changed; attribution "
            "must compute input gradients only (torch.autograd.grad, not .backward())"
        )


class AttributorContract(ContractBase):
    """Checks of the :class:`~ada_core.interfaces.Attributor` contract."""

    component_fixture = "attributor"

    def test_component_class(self, attributor):
        check_class(attributor, Attributor, "attributor")

    def test_interface_flags(self, attributor, contract_model):
        cls = type(attributor)
        assert isinstance(cls.control, bool), f"{cls.__name__}.control must be a bool"
        assert cls.share_key is None or isinstance(cls.share_key, str), (
            f"{cls.__name__}.share_key must be None or a namespaced str (e.g. 'myplugin.grad')"
        )
        attributor.set_seed(1234)  # must accept any int
        attributor.check_model(contract_model)  # must accept the contract's model

    def test_output_shape_dtype_device(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        out = attributor.attribute(contract_model, images, masks)
        assert out.shape == images.shape and out.dtype == torch.float32, (
            f"attributor contract (output): expected float32 {tuple(images.shape)}, got "
            f"{out.dtype} {tuple(out.shape)}"
        )
        assert out.device == images.device, (
            f"attributor contract (output): saliency on {out.device}, images on {images.device}"
        )

    def test_output_nonnegative_finite_nonconstant(self, attributor, contract_model, contract_images):
        out = attributor.attribute(contract_model, *contract_images)
        assert bool(torch.isfinite(out).all()) and bool((out >= 0).all()), (
            "attributor contract (output): saliency must be finite and >= 0"
        )
        flat = out.flatten(1)
        assert bool((flat.max(1).values > flat.min(1).values).any()), (
            "attributor contract (output): the saliency is constant over every image, which "
            "tells the mask builder nothing; check that _attribute uses the model and images"
        )

    @pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
    def test_restores_model_mode(self, attributor, contract_model, contract_images, mode):
        contract_model.train(mode != "eval")
        if mode == "mixed":
            list(contract_model.modules())[-1].eval()
        before = _snapshot(contract_model)
        attributor.attribute(contract_model, *contract_images)
        _assert_restored(before, contract_model, f"model mode {mode!r}")

    def test_leaves_no_hooks(self, attributor, contract_model, contract_images):
        before = hook_count(contract_model)
        attributor.attribute(contract_model, *contract_images)
        assert hook_count(contract_model) == before, (
            f"attributor contract (hooks): {hook_count(contract_model) - before} hook(s) left on "
            "the model; remove every hook through its handle (handle.remove()) in finally"
        )

    def test_parameter_grads_untouched(self, attributor, contract_model, contract_images):
        before = _mixed_state(contract_model)
        attributor.attribute(contract_model, *contract_images)
        _assert_restored(before, contract_model, "parameters")

    def test_inputs_unchanged(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        img0, mask0 = images.clone(), masks.clone()
        attributor.attribute(contract_model, images, masks)
        assert torch.equal(images, img0) and torch.equal(masks, mask0), (
            "attributor contract (inputs): attribute() modified the images or masks in place"
        )
        assert not images.requires_grad, "attributor contract (inputs): images now require grad"

    def test_rng_state_untouched(self, attributor, contract_model, contract_images):
        torch.manual_seed(12345)
        state = torch.get_rng_state()
        attributor.attribute(contract_model, *contract_images)
        assert torch.equal(torch.get_rng_state(), state), (
            "attributor contract (random state): attribution changed torch's global RNG state, "
            "which would shift the training random stream; Attributor.attribute_group restores it"
        )

    def test_works_under_no_grad(self, attributor, contract_model, contract_images):
        twin = copy.deepcopy(attributor)
        expected = attributor.attribute(contract_model, *contract_images)
        with torch.no_grad():  # as in an evaluation loop
            out = twin.attribute(contract_model, *contract_images)
        torch.testing.assert_close(
            out, expected, rtol=1e-5, atol=1e-6,
            msg=lambda m: "attributor contract (autograd): attribution under torch.no_grad() "
            f"differs from a normal call; Attributor.attribute_group enables autograd. {m}",
        )

    def test_batch_independence(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        batch = attributor.attribute(contract_model, images, masks)
        for i in (0, images.shape[0] - 1):
            alone = attributor.attribute(contract_model, images[i : i + 1], masks[i : i + 1])
            torch.testing.assert_close(
                alone[0], batch[i], rtol=1e-4, atol=1e-5,
                msg=lambda m, i=i: f"attributor contract (batch independence): sample {i} "
                f"alone differs from sample {i} in the batch; no batch statistics or per-batch "
                f"random draws. {m}",
            )

    def test_deterministic(self, attributor, contract_model, contract_images):
        a = attributor.attribute(contract_model, *contract_images)
        b = attributor.attribute(contract_model, *contract_images)
        torch.testing.assert_close(
            a, b, rtol=1e-5, atol=1e-6,
            msg=lambda m: f"attributor contract (determinism): two calls differ. {m}",
        )

    def test_seed_replays(self, attributor, contract_model, contract_images):
        twins = [copy.deepcopy(attributor) for _ in range(2)]
        for twin in twins:
            twin.set_seed(2024)
        a, b = (t.attribute(contract_model, *contract_images) for t in twins)
        torch.testing.assert_close(
            a, b, rtol=1e-5, atol=1e-6,
            msg=lambda m: "attributor contract (seed): two copies given the same set_seed "
            f"differ, so a run cannot be replayed from its seed. {m}",
        )

    def test_group_equals_separate(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        group = [copy.deepcopy(attributor) for _ in range(_MEMBERS)]
        separate = [copy.deepcopy(attributor) for _ in range(_MEMBERS)]
        grouped = Attributor.attribute_group(group, contract_model, images, masks)
        assert len(grouped) == _MEMBERS, "attributor contract (group): one map per member"
        for i, (g, a) in enumerate(zip(grouped, separate)):
            torch.testing.assert_close(
                g, a.attribute(contract_model, images, masks), rtol=1e-5, atol=1e-6,
                msg=lambda m, i=i: f"attributor contract (group): member {i} of a group of "
                f"{_MEMBERS} differs from its separate call; _attribute_many must return what "
                f"_attribute would, in order. {m}",
            )
            assert g.dtype == torch.float32, "attributor contract (group): float32 maps"
        assert [dict(a.counters) for a in group] == [dict(a.counters) for a in separate], (
            "attributor contract (group): counters differ between grouped and separate calls"
        )

    @pytest.mark.parametrize("failure", ["model-forward-1", "model-forward-2", "member"])
    def test_group_restores_state_on_error(
        self, attributor, contract_model, contract_images, failure
    ):
        before = _mixed_state(contract_model)
        group: list[Attributor] = [copy.deepcopy(attributor) for _ in range(_MEMBERS)]
        call = int(failure[-1]) if failure.startswith("model") else 0
        if failure == "member":
            group.insert(1, _FailingAttributor())
        raised = False
        with _model_fails_at(contract_model, call) as calls:
            try:
                Attributor.attribute_group(group, contract_model, *contract_images)
            except _KitFailure:
                raised = True
        assert raised or calls[0] < max(call, 1), (
            f"attributor contract (errors): the model raised at forward call {call}, but "
            "attribute_group did not propagate the error; never swallow exceptions"
        )
        _assert_restored(before, contract_model, f"a group of {len(group)} with {failure} failing")

    def test_rejects_bad_input(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        why = "attributor contract (inputs): attribute() must reject"
        with expect_error(InputError, r"\(B, 1, H, W\)", f"{why} (B, H, W) images"):
            attributor.attribute(contract_model, images[:, 0], masks[:, 0])
        bad = images.clone()
        bad[0, 0, 0, 0] = float("nan")
        with expect_error(InputError, "NaN", f"{why} NaN images"):
            attributor.attribute(contract_model, bad, masks)
        with expect_error(InputError, "differs", f"{why} masks of another shape"):
            attributor.attribute(contract_model, images, masks[:, :, :-2])
