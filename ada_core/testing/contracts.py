"""The contract suites. Subclass one, provide its fixture, and every check runs on your component.

Fixtures each suite needs:

- ``AttributorContract``: ``attributor`` (an instance); uses ``contract_model`` and
  ``contract_images``, which you may override.
- ``MaskBuilderContract``: ``mask_builder``; uses ``contract_images`` for the ground truth.
- ``ModelContract``: ``model`` (a SegModel instance, any mode).
- ``DatasetContract``: ``dataset``; optionally ``contract_preprocess`` (a PreprocessConfig).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from ada_core.errors import ConfigError, InputError
from ada_core.interfaces import Attributor, Component, MaskBuilder, SegDataset, SegModel, Volume
from ada_core.registry import Section

__all__ = ["AttributorContract", "DatasetContract", "MaskBuilderContract", "ModelContract"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _hook_count(model: nn.Module) -> int:
    return sum(len(getattr(m, d, {})) for m in model.modules() for d in _HOOK_DICTS)


def _check_class(component: Component, base: type, kind: str) -> None:
    section = Section(kind, base)
    section.add(type(component))  # raises PluginError naming what is wrong
    with pytest.raises(ConfigError, match="unknown parameter"):
        section.config(component.name, {"__not_a_field__": 1})
    type(component)()  # the defaults alone must build it


class _ContractBase:
    #: Checks this component is known to fail, with the reason: {"test_name": "reason"}.
    xfail_checks: ClassVar[dict[str, str]] = {}
    #: Name of the fixture that provides the component under test.
    component_fixture: ClassVar[str]

    @pytest.fixture(autouse=True)
    def _declared_gaps(self, request):
        """Mark the checks the component itself declares in ``contract_xfail`` as strict xfail."""
        component = request.getfixturevalue(self.component_fixture)
        reason = getattr(component, "contract_xfail", {}).get(request.function.__name__)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))


class AttributorContract(_ContractBase):
    """Checks of the :class:`~ada_core.interfaces.Attributor` contract."""

    component_fixture = "attributor"

    def _run(self, attributor, model, images, masks):
        return attributor.attribute(model, images, masks)

    def test_component_class(self, attributor):
        _check_class(attributor, Attributor, "attributor")

    def test_output_shape_dtype_device(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        out = self._run(attributor, contract_model, images, masks)
        assert out.shape == images.shape
        assert out.dtype == torch.float32
        assert out.device == images.device

    def test_output_nonnegative_finite_nonconstant(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        out = self._run(attributor, contract_model, images, masks)
        assert torch.isfinite(out).all()
        assert (out >= 0).all()
        flat = out.flatten(1)
        # A saliency that is constant over every image tells the mask builder nothing.
        assert (flat.max(1).values > flat.min(1).values).any()

    @pytest.mark.parametrize("training", [True, False])
    def test_restores_model_mode(self, attributor, contract_model, contract_images, training):
        contract_model.train(training)
        self._run(attributor, contract_model, *contract_images)
        assert all(m.training == training for m in contract_model.modules())

    def test_leaves_no_hooks(self, attributor, contract_model, contract_images):
        before = _hook_count(contract_model)
        self._run(attributor, contract_model, *contract_images)
        assert _hook_count(contract_model) == before

    def test_parameter_grads_untouched(self, attributor, contract_model, contract_images):
        params = list(contract_model.parameters())
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, float(i)) if i % 2 else None
        flags = [p.requires_grad for p in params]
        self._run(attributor, contract_model, *contract_images)
        for i, p in enumerate(params):
            if i % 2:
                assert p.grad is not None and torch.equal(p.grad, torch.full_like(p, float(i)))
            else:
                assert p.grad is None
        assert [p.requires_grad for p in params] == flags

    def test_inputs_unchanged(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        img0, mask0 = images.clone(), masks.clone()
        self._run(attributor, contract_model, images, masks)
        assert torch.equal(images, img0) and torch.equal(masks, mask0)

    def test_batch_independence(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        batch = self._run(attributor, contract_model, images, masks)
        for i in (0, images.shape[0] - 1):
            alone = self._run(attributor, contract_model, images[i : i + 1], masks[i : i + 1])
            torch.testing.assert_close(alone[0], batch[i], rtol=1e-4, atol=1e-5)

    def test_deterministic(self, attributor, contract_model, contract_images):
        a = self._run(attributor, contract_model, *contract_images)
        b = self._run(attributor, contract_model, *contract_images)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    def test_group_equals_separate(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        (grouped,) = type(attributor).attribute_group([attributor], contract_model, images, masks)
        separate = self._run(attributor, contract_model, images, masks)
        torch.testing.assert_close(grouped, separate, rtol=1e-5, atol=1e-6)

    def test_rejects_bad_input(self, attributor, contract_model, contract_images):
        images, masks = contract_images
        with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
            attributor.attribute(contract_model, images[:, 0], masks[:, 0])
        bad = images.clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(InputError, match="NaN"):
            attributor.attribute(contract_model, bad, masks)
        with pytest.raises(InputError, match="differs"):
            attributor.attribute(contract_model, images, masks[:, :, :-2])


class MaskBuilderContract(_ContractBase):
    """Checks of the :class:`~ada_core.interfaces.MaskBuilder` contract."""

    component_fixture = "mask_builder"

    @pytest.fixture
    def saliency(self, contract_images):
        gen = torch.Generator().manual_seed(1)
        return torch.rand(contract_images[0].shape, generator=gen)

    def test_component_class(self, mask_builder):
        _check_class(mask_builder, MaskBuilder, "mask builder")

    def test_keep_mask_is_binary_float(self, mask_builder, saliency, contract_images):
        keep = mask_builder.build(saliency, contract_images[1])
        assert keep.shape == saliency.shape and keep.dtype == torch.float32
        assert ((keep == 0) | (keep == 1)).all()
        assert (keep == 0).any(), "random saliency on every image should erase something"

    def test_batch_independence_and_determinism(self, mask_builder, saliency, contract_images):
        gt = contract_images[1]
        keep = mask_builder.build(saliency, gt)
        assert torch.equal(keep, mask_builder.build(saliency, gt))
        for i in range(saliency.shape[0]):
            alone = mask_builder.build(saliency[i : i + 1], gt[i : i + 1])
            assert torch.equal(alone[0], keep[i])

    def test_apply_fills_erased_pixels(self, mask_builder, saliency, contract_images):
        images, gt = contract_images
        keep = mask_builder.build(saliency, gt)
        out = mask_builder.apply(images, keep)
        assert torch.equal(out[keep == 1], images[keep == 1])
        assert (out[keep == 0] == mask_builder.fill).all()

    def test_rejects_bad_input(self, mask_builder, saliency, contract_images):
        gt = contract_images[1]
        with pytest.raises(InputError, match="differs"):
            mask_builder.build(saliency, gt[:, :, :-1])
        with pytest.raises(InputError, match="binary"):
            mask_builder.build(saliency, gt * 0.5)
        bad = saliency.clone()
        bad[0, 0, 1, 1] = float("nan")
        with pytest.raises(InputError, match="NaN"):
            mask_builder.build(bad, gt)


class ModelContract(_ContractBase):
    """Checks of the :class:`~ada_core.interfaces.SegModel` contract."""

    component_fixture = "model"

    @pytest.fixture
    def model_input(self, model):
        m = max(1, model.input_multiple)
        size = -(-32 // m) * m
        return torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))

    def test_component_class(self, model):
        _check_class(model, SegModel, "model")

    def test_forward_shape(self, model, model_input):
        model.eval()
        with torch.no_grad():
            out = model(model_input)
        assert out.shape == model_input.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()

    def test_attribution_layers_are_submodules(self, model):
        layers = model.attribution_layers()
        assert layers and model.default_attribution_layer in layers
        own = {id(m) for m in model.modules()}
        assert all(isinstance(m, nn.Module) and id(m) in own for m in layers.values())

    def test_relu_modules_one_per_use(self, model, model_input):
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert relus, "guided attribution needs nn.ReLU modules; found none"
        assert not any(m.inplace for m in relus), "in-place nn.ReLU breaks backward hooks"
        calls: dict[int, int] = {}
        handles = [
            m.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
            for m in relus
        ]
        try:
            model.eval()
            with torch.no_grad():
                model(model_input)
        finally:
            for h in handles:
                h.remove()
        reused = [n for n, m in model.named_modules() if calls.get(id(m), 0) > 1]
        assert not reused, f"nn.ReLU modules used more than once per forward: {reused}"

    def test_eval_batch_independence(self, model, model_input):
        model.eval()
        with torch.no_grad():
            batch = model(model_input)
            alone = model(model_input[1:2])
        torch.testing.assert_close(alone[0], batch[1], rtol=1e-4, atol=1e-4)

    def test_input_gradient(self, model, model_input):
        model.eval()
        x = model_input.clone().requires_grad_(True)
        model(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_state_dict_round_trip(self, model, model_input):
        state = model.state_dict()
        assert {n for n, _ in model.named_parameters()} <= set(state)
        twin = type(model)(model.config)
        twin.load_state_dict(state)
        model.eval()
        twin.eval()
        with torch.no_grad():
            torch.testing.assert_close(twin(model_input), model(model_input))

    def test_rejects_bad_size(self, model, model_input):
        m = model.input_multiple
        if m <= 1:
            pytest.skip("model takes any input size")
        size = model_input.shape[-1] + 1
        with pytest.raises(InputError, match="multiple"):
            model(torch.zeros(1, 1, size, size))


class DatasetContract(_ContractBase):
    """Checks of the :class:`~ada_core.interfaces.SegDataset` contract."""

    component_fixture = "dataset"

    @pytest.fixture
    def contract_preprocess(self):
        from ada_core.data import PreprocessConfig

        return PreprocessConfig(size=(64, 64), cache=False)

    def test_component_class(self, dataset):
        _check_class(dataset, SegDataset, "dataset")

    def test_subjects_stable_and_unique(self, dataset):
        subjects = dataset.subjects()
        assert subjects, "a data set must list at least one subject"
        ids = [s.id for s in subjects]
        assert len(set(ids)) == len(ids)
        assert [s.id for s in dataset.subjects()] == ids
        assert dataset.fingerprint() == dataset.fingerprint()

    def test_load_volume(self, dataset):
        subject = next(s for s in dataset.subjects() if s.labelled)
        vol = dataset.load(subject)
        assert isinstance(vol, Volume) and vol.subject == subject
        assert vol.image.ndim == 3 and vol.image.dtype == np.float32
        assert np.isfinite(vol.image).all()
        assert vol.mask is not None and vol.mask.shape == vol.image.shape
        assert set(np.unique(vol.mask)) <= {0, 1} and vol.mask.any()
        assert len(vol.spacing) == 3 and all(s > 0 for s in vol.spacing)

    def test_preprocesses_to_slices(self, dataset, contract_preprocess):
        from ada_core.data import preprocess_volume

        subject = next(s for s in dataset.subjects() if s.labelled)
        slices = preprocess_volume(dataset.load(subject), contract_preprocess)
        h, w = contract_preprocess.size
        assert len(slices) > 0 and slices.images.shape[1:] == (1, h, w)
        assert slices.masks.shape == slices.images.shape
        assert torch.isfinite(slices.images).all()
        assert slices.masks.flatten(1).amax(1).eq(1).all() or not contract_preprocess.drop_empty
