"""The `ada` command line, run as users run it (a subprocess of the installed script)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
import shutil
import subprocess
import tomllib

import pytest

from ada_core.cli import main

# The console script installed next to this interpreter (the venv need not be activated),
# else the one on PATH (e.g. an install with pip --target).
ADA = Path(sys.executable).with_name("ada")
if not ADA.is_file():
    found = shutil.which("ada")
    if found is None:
        pytest.fail(f"the `ada` console script is neither next to {sys.executable} nor on PATH")
    ADA = Path(found)


def run(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ada(*args, env=None, check=False):
    """Run the installed `ada` script in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    if "ADA_DISABLE_PLUGINS" not in (env or {}):
        full_env.pop("ADA_DISABLE_PLUGINS", None)
    return subprocess.run([str(ADA), *args], capture_output=True, text=True, env=full_env, check=check)


def test_version_and_help():
    assert ada("--version").stdout.strip() == "ada 0.1.0"
    out = ada("--help").stdout
    for command in ("plugins", "config", "train", "compare", "report"):
        assert command in out


def test_plugins_json_lists_every_kind_with_provenance():
    data = json.loads(ada("plugins", "--json", check=True).stdout)
    rows = {(r["kind"], r["name"]): r for r in data["components"]}
    window = rows[("mask", "window")]
    assert window["plugin"] == "core" and window["distribution"] == "ada-core"
    assert {f["name"] for f in window["fields"]} >= {"size", "stride", "regions", "gt_policy", "fill"}
    assert all(f["description"] for r in data["components"] for f in r["fields"])
    # The separately pip-installed example plugin, found through its entry point only.
    ig = rows[("attributor", "integrated_gradients")]
    assert (ig["plugin"], ig["distribution"], ig["version"]) == ("example", "ada-example-plugin", "0.1.0")


def test_disabling_the_example_plugin_removes_it():
    data = json.loads(ada("plugins", "--json", env={"ADA_DISABLE_PLUGINS": "example"}).stdout)
    assert "integrated_gradients" not in {r["name"] for r in data["components"]}


def test_plugins_table(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:5] == ["kind", "name", "plugin", "distribution", "version"]
    assert any(line.split()[:2] == ["mask", "window"] for line in out.splitlines())


def test_broken_plugin_error_and_skip(fake_dist, capsys):
    fake_dist("ada-bad", "ada_bad_plugin", "raise ImportError('kaput')\n", "bad")
    code, _, err = run(capsys, "plugins")
    assert code == 2 and "Traceback" not in err
    assert "entry point 'bad' (ada_bad_plugin) of distribution ada-bad failed to load" in err
    code, out, _ = run(capsys, "plugins", "--skip-broken")
    assert code == 0 and "broken plugin 'bad' (ada-bad) skipped" in out


def test_config_show_resolves_defaults(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text('name = "mini"\n[train]\ncycles = 2\n')
    code, out, _ = run(capsys, "config", "show", str(path), "--set", "train.batch_size=4")
    assert code == 0
    shown = tomllib.loads(out)
    assert shown["name"] == "mini" and shown["train"]["cycles"] == 2
    assert shown["train"]["batch_size"] == 4 and shown["train"]["ada_epochs"] == 30
    assert shown["augment"]["rotation_deg"] == 4.6
    assert run(capsys, "config", "validate", str(path))[1].startswith(f"{path}: valid (")


def test_config_errors_exit_2_without_traceback(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[train]\ncycles = -1\n")
    res = ada("config", "validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert str(path) in res.stderr and "train.cycles: Input should be greater than or equal to 0" in res.stderr
    res = ada("--debug", "config", "validate", str(path))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_unknown_component_in_config(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text('[mask]\nname = "windw"\n')
    code, _, err = run(capsys, "config", "validate", str(path))
    assert code == 2
    assert "mask.name = 'windw': unknown mask builder 'windw'" in err
    assert "Did you mean 'window'?" in err


def test_config_reference_is_current(capsys):
    """docs/config.md is generated from the field descriptions; regenerate it when they change."""
    from conftest import REPO

    code, out, _ = run(capsys, "config", "reference")
    assert code == 0 and "| `cycles` | int | `31` | branches | ADA cycles per branch. |" in out
    committed = (REPO / "docs" / "config.md").read_text()
    assert out == committed, "docs/config.md is stale: run `ada config reference > docs/config.md`"
