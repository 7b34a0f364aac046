"""The contract suites. Subclass one, provide its fixture, and every check runs on your component.

Fixtures each suite needs:

- ``AttributorContract`` (in :mod:`ada_core.testing.attributor`): ``attributor`` (an
  instance); uses ``contract_model`` and ``contract_images``, which you may override.
- ``MaskBuilderContract``: ``mask_builder``; uses ``contract_images`` for the ground truth.
- ``ModelContract``: ``model`` (a SegModel instance, any mode).
- ``DatasetContract``: ``dataset``; optionally ``contract_preprocess`` (a PreprocessConfig).

Known gaps are declared on the component (``contract_xfail``, see
:class:`~ada_core.testing._base.ContractBase`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ada_core.errors import InputError
from ada_core.interfaces import MaskBuilder, SegDataset, SegModel, Volume
from ada_core.testing._base import ContractBase, check_class, expect_error
from ada_core.testing.attributor import AttributorContract

__all__ = ["AttributorContract", "DatasetContract", "MaskBuilderContract", "ModelContract"]


class MaskBuilderContract(ContractBase):
    """Checks of the :class:`~ada_core.interfaces.MaskBuilder` contract."""

    component_fixture = "mask_builder"

    @pytest.fixture
    def saliency(self, contract_images):
        gen = torch.Generator().manual_seed(1)
        return torch.rand(contract_images[0].shape, generator=gen)

    def test_component_class(self, mask_builder):
        check_class(mask_builder, MaskBuilder, "mask builder")

    def test_keep_mask_is_binary_float(self, mask_builder, saliency, contract_images):
        keep = mask_builder.build(saliency, contract_images[1])
        assert keep.shape == saliency.shape and keep.dtype == torch.float32, (
            f"mask builder contract (output): expected a float32 {tuple(saliency.shape)} keep "
            f"mask, got {keep.dtype} {tuple(keep.shape)}"
        )
        assert bool(((keep == 0) | (keep == 1)).all()), (
            "mask builder contract (output): the keep mask must hold only 0 (erase) and 1 (keep)"
        )
        assert bool((keep == 0).any()), (
            "mask builder contract (output): random saliency on every image erased nothing; "
            "_build must set the erased pixels to 0"
        )

    def test_batch_independence_and_determinism(self, mask_builder, saliency, contract_images):
        gt = contract_images[1]
        keep = mask_builder.build(saliency, gt)
        assert torch.equal(keep, mask_builder.build(saliency, gt)), (
            "mask builder contract (determinism): two builds of the same input differ"
        )
        for i in range(saliency.shape[0]):
            alone = mask_builder.build(saliency[i : i + 1], gt[i : i + 1])
            assert torch.equal(alone[0], keep[i]), (
                f"mask builder contract (batch independence): sample {i} alone gets another "
                "keep mask than in the batch; build each sample's mask from that sample only"
            )

    def test_apply_fills_erased_pixels(self, mask_builder, saliency, contract_images):
        images, gt = contract_images
        keep = mask_builder.build(saliency, gt)
        out = mask_builder.apply(images, keep)
        assert torch.equal(out[keep == 1], images[keep == 1]), (
            "mask builder contract (apply): pixels with keep == 1 must keep their image value"
        )
        assert bool((out[keep == 0] == mask_builder.fill).all()), (
            f"mask builder contract (apply): erased pixels must equal fill ({mask_builder.fill})"
        )

    def test_rejects_bad_input(self, mask_builder, saliency, contract_images):
        gt = contract_images[1]
        why = "mask builder contract (inputs): build() must reject"
        with expect_error(InputError, "differs", f"{why} ground truth of another shape"):
            mask_builder.build(saliency, gt[:, :, :-1])
        with expect_error(InputError, "binary", f"{why} non-binary ground truth"):
            mask_builder.build(saliency, gt * 0.5)
        bad = saliency.clone()
        bad[0, 0, 1, 1] = float("nan")
        with expect_error(InputError, "NaN", f"{why} NaN saliency"):
            mask_builder.build(bad, gt)


class ModelContract(ContractBase):
    """Checks of the :class:`~ada_core.interfaces.SegModel` contract."""

    component_fixture = "model"

    @pytest.fixture
    def model_input(self, model):
        m = max(1, model.input_multiple)
        size = -(-32 // m) * m
        return torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))

    def test_component_class(self, model):
        check_class(model, SegModel, "model")

    def test_forward_shape(self, model, model_input):
        model.eval()
        with torch.no_grad():
            out = model(model_input)
        assert out.shape == model_input.shape and out.dtype == torch.float32, (
            f"model contract (forward): (B, 1, H, W) input {tuple(model_input.shape)} must give "
            f"float32 logits of the same shape, got {out.dtype} {tuple(out.shape)}"
        )
        assert bool(torch.isfinite(out).all()), "model contract (forward): non-finite logits"

    def test_attribution_layers_are_submodules(self, model):
        layers = model.attribution_layers()
        assert layers and model.default_attribution_layer in layers, (
            f"model contract (layers): default_attribution_layer "
            f"{model.default_attribution_layer!r} must be a key of attribution_layers() "
            f"{sorted(layers)}"
        )
        own = {id(m) for m in model.modules()}
        foreign = [k for k, m in layers.items() if not isinstance(m, nn.Module) or id(m) not in own]
        assert not foreign, (
            f"model contract (layers): attribution_layers() {foreign} are not sub-modules of "
            "the model; return the modules forward() calls"
        )

    def test_relu_modules_one_per_use(self, model, model_input):
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert relus, (
            "model contract (activations): no nn.ReLU modules found; guided attribution hooks "
            "nn.ReLU modules, so use one nn.ReLU module per activation, not F.relu"
        )
        assert not any(m.inplace for m in relus), (
            "model contract (activations): in-place nn.ReLU breaks backward hooks; use "
            "nn.ReLU() (inplace=False)"
        )
        calls: dict[int, int] = {}
        handles = [
            m.register_forward_hook(
                lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1)
            )
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
        assert not reused, (
            f"model contract (activations): nn.ReLU modules used more than once per forward: "
            f"{reused}; give every activation its own nn.ReLU instance"
        )

    def test_eval_batch_independence(self, model, model_input):
        model.eval()
        with torch.no_grad():
            batch = model(model_input)
            alone = model(model_input[1:2])
        torch.testing.assert_close(
            alone[0], batch[1], rtol=1e-4, atol=1e-4,
            msg=lambda m: "model contract (eval): in eval mode a sample's logits must not "
            f"depend on the rest of the batch (batch norm in eval uses running stats). {m}",
        )

    def test_input_gradient(self, model, model_input):
        model.eval()
        x = model_input.clone().requires_grad_(True)
        model(x).sum().backward()
        assert x.grad is not None and bool(torch.isfinite(x.grad).all()), (
            "model contract (gradients): logits must be differentiable with finite gradients "
            "with respect to the input"
        )
        assert float(x.grad.abs().sum()) > 0, (
            "model contract (gradients): the input gradient is zero everywhere; saliency "
            "methods would see nothing"
        )

    def test_state_dict_round_trip(self, model, model_input):
        state = model.state_dict()
        missing = {n for n, _ in model.named_parameters()} - set(state)
        assert not missing, f"model contract (state): parameters missing from state_dict: {missing}"
        twin = type(model)(model.config)
        twin.load_state_dict(state)
        model.eval()
        twin.eval()
        with torch.no_grad():
            torch.testing.assert_close(
                twin(model_input), model(model_input),
                msg=lambda m: "model contract (state): a twin built from the config and "
                f"loaded with state_dict() gives other logits. {m}",
            )

    def test_rejects_bad_size(self, model, model_input):
        m = model.input_multiple
        if m <= 1:
            pytest.skip("model takes any input size")
        size = model_input.shape[-1] + 1
        with expect_error(
            InputError,
            "multiple",
            f"model contract (input size): a {size}x{size} input is not a multiple of "
            f"input_multiple={m}; forward must start with self.check_input_size(*x.shape[-2:])",
        ):
            model(torch.zeros(1, 1, size, size))


class DatasetContract(ContractBase):
    """Checks of the :class:`~ada_core.interfaces.SegDataset` contract."""

    component_fixture = "dataset"

    @pytest.fixture
    def contract_preprocess(self):
        from ada_core.data import PreprocessConfig

        return PreprocessConfig(size=(64, 64), cache=False)

    def test_component_class(self, dataset):
        check_class(dataset, SegDataset, "dataset")

    def test_subjects_stable_and_unique(self, dataset):
        subjects = dataset.subjects()
        assert subjects, "dataset contract (subjects): a data set must list at least one subject"
        ids = [s.id for s in subjects]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        assert not dupes, f"dataset contract (subjects): duplicate subject ids {dupes}"
        assert [s.id for s in dataset.subjects()] == ids, (
            "dataset contract (subjects): subjects() must list the same subjects in the same "
            "order every call (sort them)"
        )
        assert dataset.fingerprint() == dataset.fingerprint(), (
            "dataset contract (fingerprint): fingerprint() changes between calls"
        )

    def test_load_volume(self, dataset):
        subject = next(s for s in dataset.subjects() if s.labelled)
        vol = dataset.load(subject)
        what = f"dataset contract (load {subject.id!r})"
        assert isinstance(vol, Volume) and vol.subject == subject, (
            f"{what}: load() must return a Volume for the subject it was given"
        )
        assert vol.image.ndim == 3 and vol.image.dtype == np.float32, (
            f"{what}: image must be float32 (X, Y, Z), got {vol.image.dtype} {vol.image.shape}"
        )
        assert bool(np.isfinite(vol.image).all()), f"{what}: image holds NaN or inf"
        assert vol.mask is not None and vol.mask.shape == vol.image.shape, (
            f"{what}: a labelled subject needs a mask of the image's shape"
        )
        assert set(np.unique(vol.mask)) <= {0, 1} and bool(vol.mask.any()), (
            f"{what}: the mask must be binary (0/1) and not empty"
        )
        assert len(vol.spacing) == 3 and all(s > 0 for s in vol.spacing), (
            f"{what}: spacing must be three positive voxel sizes in mm, got {vol.spacing}"
        )

    def test_preprocesses_to_slices(self, dataset, contract_preprocess):
        from ada_core.data import preprocess_volume

        subject = next(s for s in dataset.subjects() if s.labelled)
        slices = preprocess_volume(dataset.load(subject), contract_preprocess)
        h, w = contract_preprocess.size
        what = f"dataset contract (preprocess {subject.id!r})"
        assert len(slices) > 0 and slices.images.shape[1:] == (1, h, w), (
            f"{what}: expected slices (N, 1, {h}, {w}), got {tuple(slices.images.shape)}"
        )
        assert slices.masks.shape == slices.images.shape, f"{what}: masks and images differ"
        assert bool(torch.isfinite(slices.images).all()), f"{what}: NaN or inf in the slices"
        assert bool(slices.masks.flatten(1).amax(1).eq(1).all()) or not (
            contract_preprocess.drop_empty
        ), f"{what}: drop_empty is set, but slices without ground truth remain"
