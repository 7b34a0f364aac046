"""The contract kit run over every component that the installed plugins register.

Whatever `ada plugins` lists must pass its interface's contract suite: this is the same kit
third-party authors use (docs/plugins.md), applied to first-party and example plugins alike.
"""

from __future__ import annotations

import pytest

from ada_core.plugins import load_plugins
from ada_core.testing import AttributorContract, DatasetContract, MaskBuilderContract, ModelContract
from conftest import SHARED_DATA

REGISTRY = load_plugins()

# Data sets that need a location get one here; the rest must build from their defaults.
DATASET_PARAMS = {
    "bids": {"root": str(SHARED_DATA / "gm-challenge-dev")},
    "scgm": None,  # needs an SCGM tree: covered by tests/plugins/test_scgm.py's contract class
}


# A branch that erases nothing (the built-in keep-training control) is never asked for
# saliency: the attribution contract does not apply to it (its own test: test_keep_training).
ERASING = [n for n in REGISTRY.attributors.names() if REGISTRY.attributors.get(n).erases]


@pytest.fixture(params=ERASING)
def attributor(request):
    return REGISTRY.attributors.build(request.param)


@pytest.fixture(params=REGISTRY.masks.names())
def mask_builder(request):
    return REGISTRY.masks.build(request.param)


@pytest.fixture(params=REGISTRY.models.names(), scope="module")
def model(request):
    return REGISTRY.models.build(request.param)


@pytest.fixture(params=[n for n in REGISTRY.datasets.names() if DATASET_PARAMS.get(n, {}) is not None])
def dataset(request):
    params = DATASET_PARAMS.get(request.param, {})
    if request.param == "bids" and not SHARED_DATA.exists():
        pytest.skip(f"real MRI test data not found at {SHARED_DATA}")
    return REGISTRY.datasets.build(request.param, params)


class TestEveryAttributor(AttributorContract):
    pass


class TestEveryMaskBuilder(MaskBuilderContract):
    pass


class TestEveryModel(ModelContract):
    pass


class TestEveryDataset(DatasetContract):
    pass


def test_first_party_components_are_registered():
    expected = {
        "attributor": {"vanilla", "guided_backprop", "gradcam", "guided_gradcam", "input_x_gradient",
                       "deconvnet", "random", "integrated_gradients", "none"},
        "mask": {"window"},
        "dataset": {"phantom", "scgm", "bids"},
        "model": {"unet-paper", "smp"},
    }
    for kind, names in expected.items():
        assert names <= set(REGISTRY.sections[kind].names()), kind


def test_keep_training_is_a_registered_component_that_never_attributes():
    entry = REGISTRY.attributors.entry("none")
    cls = entry.cls
    assert entry.plugin.name == "core"  # ada-seg's own built-in, registered like `window`
    assert cls.control and not cls.erases
    assert cls(cls.Config()).describe() == "longer training without ADA"
    assert cls(cls.Config(steps="matched")).repeat == 2
