"""Contract suites for plugin authors: one fixture and an empty subclass get every check.

Example::

    import pytest
    from ada_core.testing import AttributorContract

    @pytest.fixture
    def attributor():
        return MyAttributor()

    class TestMyAttributor(AttributorContract):
        pass

Known gaps are declared on the component, not skipped: ``contract_xfail =
{"test_batch_independence": "why"}`` on the component class marks those checks as strict
xfail in every suite that tests it; a name that is not a check of the suite is an error. The
fixtures ``contract_model`` and ``contract_images`` (from this package's pytest plugin) can be
overridden. Every failing check says which contract broke and how to fix it.
"""

import pytest

# Before the suites are imported: pytest then rewrites their asserts (rich failure output)
# also when ada-core is installed editable, where pytest finds no module files to mark.
pytest.register_assert_rewrite(
    "ada_core.testing._base", "ada_core.testing.attributor", "ada_core.testing.contracts"
)

from ada_core.testing.attributor import AttributorContract
from ada_core.testing.contracts import (
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
