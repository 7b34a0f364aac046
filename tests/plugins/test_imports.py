"""First-party plugins use ada_core's public surface only, like any third-party plugin.

Allowed: ``import ada_core``, ``from ada_core import X`` with X in ``ada_core.__all__``, and
``ada_core.testing`` (the contract kit) in test files. Anything else (``ada_core.registry``,
``ada_core._slicing``, ``from ada_core import errors``) ties a plugin to ada_core's layout.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ada_core

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PUBLIC = frozenset(ada_core.__all__)


def _is_test_file(path: Path) -> bool:
    return "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"


def violations(source: str, *, test_file: bool = False) -> list[str]:
    """Every import of ada_core in ``source`` that the rule above forbids, as ``line: text``."""
    allowed_modules = {"ada_core"} | ({"ada_core.testing"} if test_file else set())
    found: list[str] = []

    def module_ok(module: str) -> bool:
        # ada_core itself is allowed bare only; the contract kit with its submodules.
        return any(
            module == m or (m != "ada_core" and module.startswith(m + "."))
            for m in allowed_modules
        )

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ada_core" and not module_ok(alias.name):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "ada_core":
                continue
            if node.module == "ada_core":
                for alias in node.names:
                    if alias.name not in PUBLIC:
                        found.append(f"{node.lineno}: from ada_core import {alias.name}")
            elif not module_ok(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.split(".")[0] == "ada_core"
            and not module_ok(node.args[0].value)
        ):
            found.append(f"{node.lineno}: import_module({node.args[0].value!r})")
    return found


@pytest.mark.parametrize(
    ("source", "test_file", "expected"),
    [
        ("from ada_core import Registry, hookimpl\nimport ada_core\n", False, []),
        ("from ada_core.registry import Registry\n", False,
         ["1: from ada_core.registry import ..."]),
        ("import ada_core._slicing as s\n", False, ["1: import ada_core._slicing"]),
        ("from ada_core import errors, _EXPORTS\n", False,
         ["1: from ada_core import errors", "1: from ada_core import _EXPORTS"]),
        ("def f():\n    from ada_core.data import SliceSet\n", False,
         ["2: from ada_core.data import ..."]),
        ("import importlib\nimportlib.import_module('ada_core.masks')\n", False,
         ["2: import_module('ada_core.masks')"]),
        ("from ada_core.testing import AttributorContract\n", False,
         ["1: from ada_core.testing import ..."]),
        ("from ada_core.testing import AttributorContract\n", True, []),
        ("from ada_core.testing.plugin import x\n", True, []),
        ("from . import base\nimport torch\n", False, []),
    ],
)
def test_the_checker_tells_allowed_from_forbidden(source, test_file, expected):
    assert violations(source, test_file=test_file) == expected


def test_first_party_plugins_import_only_public_ada_core():
    files = sorted(PLUGINS.glob("*/**/*.py"))
    assert len(files) >= 15, f"expected the plugin sources under {PLUGINS}"
    bad = [
        f"{path.relative_to(PLUGINS)}:{v}"
        for path in files
        for v in violations(path.read_text(), test_file=_is_test_file(path))
    ]
    assert not bad, (
        "first-party plugins must import only names in ada_core.__all__ "
        "(`from ada_core import X`); found:\n  " + "\n  ".join(bad)
    )
