"""The pytest plugin behind ``ada_core.testing`` (registered through the ``pytest11`` entry point).

It provides the default fixtures the contract suites need. Known gaps are declared on the
component (``contract_xfail``) and marked by the suites themselves (``ContractBase``).
"""

from __future__ import annotations

import pytest
import torch

from ada_core.testing.models import TinySegModel


@pytest.fixture
def contract_model() -> TinySegModel:
    """The model attributor contracts explain; override it to use your own SegModel."""
    torch.manual_seed(0)
    return TinySegModel()


@pytest.fixture
def contract_images() -> tuple[torch.Tensor, torch.Tensor]:
    """A small batch ``(images, masks)``, each ``(4, 1, 32, 32)``; override for other sizes."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 1, 32, 32, generator=gen)
    masks = torch.zeros(4, 1, 32, 32)
    masks[:, :, 12:20, 10:22] = 1.0
    masks[1] = 0.0  # one sample without ground truth
    return images, masks
