"""Contract suites for plugin authors: one fixture and an empty subclass get every check.

Example::

    import pytest
    from ada_core.testing import AttributorContract

    @pytest.fixture
    def attributor():
        return MyAttributor()

    class TestMyAttributor(AttributorContract):
        pass

Known gaps are declared, not skipped: ``xfail_checks = {"test_batch_independence": "why"}``
on the subclass marks those checks as strict xfail. The fixtures ``contract_model`` and
``contract_images`` (from this package's pytest plugin) can be overridden.
"""

from ada_core.testing.contracts import (
    AttributorContract,
    DatasetContract,
    MaskBuilderContract,
    ModelContract,
)
from ada_core.testing.models import TinySegModel

__all__ = [
    "AttributorContract",
    "DatasetContract",
    "MaskBuilderContract",
    "ModelContract",
    "TinySegModel",
]
