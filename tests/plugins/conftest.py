"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import pytest
import torch

from ada_core.plugins import load_plugins


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small tensors: threads only add overhead on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def registry():
    """The registry every installed plugin fills, as users get it."""
    return load_plugins()


@pytest.fixture(scope="module")
def reg():
    """The same registry, under the name the attributor tests use."""
    return load_plugins()


@pytest.fixture
def model():
    """A small SegModel with every kind of layer the attributors touch."""
    from ada_core.testing.models import TinySegModel

    torch.manual_seed(0)
    return TinySegModel()


@pytest.fixture
def batch():
    """``(images, masks)``: 3 images of 16 x 16 with one ground-truth rectangle each."""
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(3, 1, 16, 16, generator=gen)
    masks = torch.zeros(3, 1, 16, 16)
    masks[:, :, 5:11, 4:12] = 1.0
    return images, masks
