"""Plugin discovery through real entry points of (fake) installed distributions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ada_core.errors import PluginError
from ada_core.plugins import load_plugins

GOOD = """
import torch
from pydantic import Field
from ada_core import Attributor, ComponentConfig, hookimpl

class EdgeConfig(ComponentConfig):
    scale: float = Field(1.0, gt=0, description="Multiplier.")

class EdgeAttributor(Attributor):
    name = "edges"
    Config = EdgeConfig
    def _attribute(self, model, images, masks):
        return images.diff(dim=-1, prepend=images[..., :1]).abs() * self.config.scale

@hookimpl
def ada_register(registry):
    registry.attributors.add(EdgeAttributor)
"""


def test_discovers_entry_point_with_distribution(fake_dist):
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    registry = load_plugins(disable=set())
    entry = registry.attributors.entry("edges")
    assert (entry.plugin.name, entry.plugin.distribution, entry.plugin.version) == (
        "edges",
        "ada-edges",
        "1.2.3",
    )
    assert registry.masks.entry("window").plugin.distribution == "ada-core"


def test_disable_by_environment(fake_dist, monkeypatch):
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    monkeypatch.setenv("ADA_DISABLE_PLUGINS", "nothing, edges")
    assert "edges" not in load_plugins().attributors


def test_plugin_that_fails_to_import(fake_dist):
    fake_dist("ada-broken", "ada_broken_plugin", "import not_a_module_anywhere\n", ep_name="broken")
    with pytest.raises(PluginError) as err:
        load_plugins(disable=set())
    msg = str(err.value)
    assert "entry point 'broken'" in msg and "ada-broken" in msg
    assert "not_a_module_anywhere" in msg


def test_broken_plugin_is_skipped_with_flag(fake_dist):
    fake_dist("ada-broken", "ada_broken_plugin", "raise RuntimeError('boom')\n", ep_name="broken")
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    registry = load_plugins(skip_broken=True, disable=set())
    assert "edges" in registry.attributors
    [(info, message)] = registry.broken
    assert info.name == "broken" and info.distribution == "ada-broken" and "boom" in message


def test_duplicate_name_names_both_plugins(fake_dist):
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    fake_dist("ada-edges-two", "ada_edges_two", GOOD, ep_name="edges2")
    with pytest.raises(PluginError) as err:
        load_plugins(disable=set())
    msg = str(err.value)
    assert "'edges' is registered twice" in msg
    assert "plugin 'edges' (ada-edges)" in msg and "plugin 'edges2' (ada-edges-two)" in msg


def test_duplicate_rolls_back_the_broken_plugin(fake_dist):
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    twice = GOOD.replace(
        "EdgeAttributor)", "EdgeAttributor)\n    registry.attributors.add(EdgeAttributor)"
    )
    fake_dist("ada-dup", "ada_dup_plugin", twice, ep_name="dup")
    registry = load_plugins(skip_broken=True, disable={"edges"})
    # "dup" registered "edges" then failed on the second add: nothing of it may remain.
    assert "edges" not in registry.attributors
    assert [b[0].name for b in registry.broken] == ["dup"]


NOT_IMPLEMENTED = """
from ada_core import Attributor, hookimpl

class Half(Attributor):
    name = "half"

@hookimpl
def ada_register(registry):
    registry.attributors.add(Half)
"""


def test_class_not_implementing_interface(fake_dist):
    fake_dist("ada-half", "ada_half_plugin", NOT_IMPLEMENTED, ep_name="half")
    with pytest.raises(PluginError) as err:
        load_plugins(disable=set())
    msg = str(err.value)
    assert "plugin 'half' (distribution ada-half)" in msg
    assert "does not implement the abstract methods: _attribute" in msg


def test_nothing_is_loaded_at_import():
    code = (
        "import sys, ada_core, ada_core.cli\n"
        "loaded = [m for m in sys.modules if m.startswith(('ada_captum', 'ada_scgm', 'ada_unet', "
        "'ada_example_plugin', 'captum', 'nibabel'))]\n"
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
