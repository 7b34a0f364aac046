"""What every contract suite shares: declared gaps, the class check, error expectations.

Every failing check says which contract broke and how to fix it: asserts carry a message,
and :func:`expect_error` turns pytest's bare "DID NOT RAISE" into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from torch import nn

from ada_core.errors import ConfigError, ContractError, PluginError, suggest
from ada_core.interfaces import Component
from ada_core.registry import Section

__all__ = ["ContractBase", "check_class", "expect_error", "hook_count"]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def hook_count(model: nn.Module) -> int:
    """Hooks registered on ``model`` and its sub-modules (read-only look at torch's dicts)."""
    return sum(len(getattr(m, d, {})) for m in model.modules() for d in _HOOK_DICTS)


@contextlib.contextmanager
def expect_error(error: type[BaseException], match: str, contract: str) -> Iterator[None]:
    """Fail with ``contract`` unless the block raises ``error`` with a message matching ``match``.

    Args:
        error: the exception type the contract requires.
        match: regular expression the message must contain (``re.search``).
        contract: what the component must do, e.g. ``"attribute() must reject NaN images"``.
    """
    try:
        with pytest.raises(error, match=match):
            yield
    except pytest.fail.Exception:
        pytest.fail(f"{contract}: expected {error.__name__} (message matching {match!r}), "
                    "but nothing was raised")
    except AssertionError as e:  # raised, but the message does not say what it must
        pytest.fail(f"{contract}: {error.__name__} was raised, but its message must match "
                    f"{match!r} so that users learn what to fix; {e}")


def check_class(component: Component, base: type, kind: str) -> None:
    """The registry's class rules, unknown parameters refused, and defaults that build it."""
    section = Section(kind, base)
    try:
        section.add(type(component))
    except PluginError as e:
        pytest.fail(f"{kind} class contract: the registry would refuse this class: {e}")
    with expect_error(
        ConfigError, "unknown parameter", f"{kind} class contract: Config must forbid extra keys"
    ):
        section.config(component.name, {"__not_a_field__": 1})
    try:
        type(component)()
    except Exception as e:  # noqa: BLE001  (any failure here is this contract failing)
        pytest.fail(
            f"{kind} class contract: {type(component).__name__}() must build from the Config "
            f"defaults alone (every field defaulted), but raised {type(e).__name__}: {e}"
        )


class ContractBase:
    """Base of the suites: runs the gaps a component declares as strict xfails.

    A component declares the checks it is known to fail, with the reason, in its class
    attribute ``contract_xfail = {"test_name": "reason"}``; that declaration travels with the
    component, so every suite that tests it (its author's, ADA's own) sees the same gaps.
    """

    #: Name of the fixture that provides the component under test.
    component_fixture: ClassVar[str]

    @classmethod
    def check_names(cls) -> list[str]:
        """The checks of this suite (its ``test_*`` methods)."""
        return sorted(n for n in dir(cls) if n.startswith("test_") and callable(getattr(cls, n)))

    @pytest.fixture(autouse=True)
    def _declared_gaps(self, request: pytest.FixtureRequest) -> None:
        """Mark the checks the component declares in ``contract_xfail`` as strict xfail."""
        __tracebackhide__ = True  # the error message says it all
        suite = type(self).__name__
        if hasattr(type(self), "xfail_checks"):
            raise ContractError(
                f"{suite}.xfail_checks is no longer supported: declare known gaps on the "
                "component class instead, contract_xfail = {'test_name': 'reason'}, so that "
                "they travel with it to every suite that tests it"
            )
        component = request.getfixturevalue(self.component_fixture)
        gaps: Any = getattr(component, "contract_xfail", {})
        owner = type(component).__name__
        if not isinstance(gaps, dict) or not all(isinstance(r, str) for r in gaps.values()):
            raise ContractError(
                f"{owner}.contract_xfail must be a dict {{'test_name': 'reason'}}, got {gaps!r}"
            )
        checks = self.check_names()
        for name in gaps:
            if name not in checks:
                raise ContractError(
                    f"{owner}.contract_xfail declares {name!r}, which is not a check of {suite}; "
                    f"fix or remove the entry. {suggest(str(name), checks)}"
                )
        reason = gaps.get(request.function.__name__)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
