"""What a plugin author writes: one fixture and an empty subclass of the contract suite."""

import pytest

from ada_core.testing import AttributorContract
from ada_example_plugin.integrated_gradients import IntegratedGradientsAttributor


@pytest.fixture
def attributor():
    return IntegratedGradientsAttributor()


class TestIntegratedGradients(AttributorContract):
    pass
