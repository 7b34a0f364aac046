"""The contract kit itself: failures say which contract broke and how to fix it; declared gaps.

A broken component must fail its suite with a message (not a bare AssertionError), a
declared gap must be a strict xfail, and a declaration naming no check must be an error.
The suites run in a child pytest, exactly as a plugin author runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from pydantic import Field

from ada_core import ComponentConfig, MaskBuilder
from ada_core.testing._base import check_class, expect_error

SUITE = """
import pytest
from ada_core import Attributor
from ada_core.testing import AttributorContract


class Leaky(Attributor):
    name = "leaky"

    def _attribute(self, model, images, masks):
        model.register_forward_hook(lambda *a: None)  # never removed
        return images.abs()


class Typo(Attributor):
    name = "typo"
    contract_xfail = {"test_batch_independance": "misspelled"}

    def _attribute(self, model, images, masks):
        return images.abs()


class ClaimsAGap(Attributor):
    name = "claims"
    contract_xfail = {"test_deterministic": "claimed, but it is deterministic"}

    def _attribute(self, model, images, masks):
        return images.abs()


class TestLeaky(AttributorContract):
    @pytest.fixture
    def attributor(self):
        return Leaky()


class TestTypo(AttributorContract):
    @pytest.fixture
    def attributor(self):
        return Typo()


class TestClaimsAGap(AttributorContract):
    @pytest.fixture
    def attributor(self):
        return ClaimsAGap()


class TestOldStyle(AttributorContract):
    xfail_checks = {"test_deterministic": "declared on the test class"}

    @pytest.fixture
    def attributor(self):
        return ClaimsAGap()
"""


@pytest.fixture(scope="module")
def child_run(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("kit")
    (folder / "test_suite.py").write_text(textwrap.dedent(SUITE))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
         "-k", "test_leaves_no_hooks or test_deterministic", str(folder)],
        capture_output=True, text=True, cwd=folder, env=os.environ.copy(), timeout=300,
        check=False,  # the child suite fails on purpose
    )
    return result.stdout + result.stderr


def test_broken_component_fails_with_a_rich_message(child_run):
    assert "TestLeaky::test_leaves_no_hooks FAILED" in child_run or (
        "FAILED test_suite.py::TestLeaky::test_leaves_no_hooks" in child_run
    ), child_run
    assert "attributor contract (hooks): 1 hook(s) left on the model" in child_run, child_run
    assert "remove every hook through its handle" in child_run
    # assertion rewriting is active (the kit registered itself): the compared values show
    assert "where" in child_run and "hook_count" in child_run, child_run


def test_declared_gap_is_a_strict_xfail(child_run):
    assert "TestClaimsAGap::test_deterministic" in child_run
    assert "[XPASS(strict)] claimed, but it is deterministic" in child_run, child_run


def test_unknown_gap_name_is_an_error_listing_the_checks(child_run):
    assert "ERROR test_suite.py::TestTypo::test_leaves_no_hooks" in child_run, child_run
    assert (
        "Typo.contract_xfail declares 'test_batch_independance', which is not a check of "
        "TestTypo" in child_run
    )
    assert "'test_group_equals_separate'" in child_run  # the valid names are listed
    assert "Did you mean 'test_batch_independence'?" in child_run


def test_xfail_checks_on_the_test_class_is_refused(child_run):
    assert "ERROR test_suite.py::TestOldStyle::test_deterministic" in child_run, child_run
    assert "TestOldStyle.xfail_checks is no longer supported" in child_run
    assert "contract_xfail" in child_run


def test_class_check_names_the_broken_rule():
    class NoDescription(ComponentConfig):
        size: int = Field(3)

    class Builder(MaskBuilder):
        name = "undocumented"
        Config = NoDescription

        def _build(self, saliency, ground_truth):
            return saliency * 0

    with pytest.raises(pytest.fail.Exception, match=r"mask builder class contract: .*'size' has "
                       "no description"):
        check_class(Builder(), MaskBuilder, "mask builder")


def test_expect_error_says_what_was_expected():
    nothing = r"must reject NaN: expected ValueError \(message matching 'NaN'\), but nothing"
    with (
        pytest.raises(pytest.fail.Exception, match=nothing),
        expect_error(ValueError, "NaN", "must reject NaN"),
    ):
        pass
    with (
        pytest.raises(pytest.fail.Exception, match="its message must match 'NaN'"),
        expect_error(ValueError, "NaN", "must reject NaN"),
    ):
        raise ValueError("bad value")
