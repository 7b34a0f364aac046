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
