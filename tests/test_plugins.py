"""Plugin discovery through real entry points of installed distributions.

The first tests write dist-info folders by hand and load in-process (`fake_dist`); the last
ones pip-install small broken distributions and load them in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ada_core.errors import PluginError, PluginWarning
from ada_core.plugins import load_plugins
from plugin_dists import DISTS, Scenario, load_in_subprocess, pip_install

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
    assert registry.masks.entry("window").plugin.distribution == "ada-seg"


def test_disable_by_environment(fake_dist, monkeypatch):
    fake_dist("ada-edges", "ada_edges_plugin", GOOD, ep_name="edges")
    monkeypatch.setenv("ADA_DISABLE_PLUGINS", "nothing, edges")
    with pytest.warns(PluginWarning, match="ADA_DISABLE_PLUGINS names 'nothing'") as caught:
        registry = load_plugins()
    assert "edges" not in registry.attributors
    assert len(caught) == 1  # 'edges' exists, so only 'nothing' is reported


def test_disabling_the_builtins_warns_that_it_cannot(monkeypatch):
    monkeypatch.setenv("ADA_DISABLE_PLUGINS", "core")
    with pytest.warns(PluginWarning, match="'core', ada-seg's built-ins, which cannot be"):
        registry = load_plugins()
    assert "window" in registry.masks


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
    assert "entry point 'half' (ada_half_plugin) of distribution ada-half failed to register" in msg
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


# --- Real pip-installed distributions, loaded in a fresh interpreter -----------------------

SCENARIOS = [
    Scenario("good", ("good",)),
    Scenario("typo", ("typo",)),
    Scenario("typo_skip", ("typo", "good"), skip_broken=True),
    Scenario("nohook", ("nohook",)),
    Scenario("undecorated", ("undecorated",)),
    Scenario("nothing", ("nothing",)),
    Scenario("badargs", ("badargs",)),
    Scenario("twin", ("twin",)),
    Scenario("twin_skip", ("twin", "good"), skip_broken=True),
    Scenario("core", ("core",)),
    Scenario("core_skip", ("core", "good"), skip_broken=True),
    Scenario("alias", ("alias_a", "alias_b")),
    Scenario("alias_skip", ("alias_a", "alias_b"), skip_broken=True),
    Scenario("halfway_skip", ("halfway", "good"), skip_broken=True),
    Scenario("unknown_disabled", ("good",), also_disable=("nosuch",)),
]
HOOKS = "of distribution ada-hooks"


@pytest.fixture(scope="session")
def loaded(tmp_path_factory) -> dict[str, dict]:
    """Every scenario's outcome: one pip install and one subprocess for the whole session."""
    site = pip_install(DISTS, tmp_path_factory.mktemp("pip-plugins"))
    return load_in_subprocess(site, SCENARIOS)


def _error(outcome: dict) -> str:
    assert outcome["error"] is not None, f"expected a PluginError, got {outcome}"
    assert outcome["error"]["type"] == "PluginError", outcome["error"]
    return outcome["error"]["message"]


def _components(outcome: dict) -> dict[str, tuple[str, str, str]]:
    assert outcome["error"] is None, outcome["error"]
    rows = outcome["components"]
    return {name: (plugin, dist, version) for _, name, plugin, dist, version in rows}


def test_installed_plugin_keeps_exact_provenance(loaded):
    outcome = loaded["good"]
    components = _components(outcome)
    assert components["good_edges"] == ("good", "ada-good", "2.0.1")
    assert components["window"][:2] == ("core", "ada-seg")
    assert outcome["broken"] == [] and outcome["warnings"] == []


def test_misspelled_hook_is_refused_with_the_right_name(loaded):
    msg = _error(loaded["typo"])
    assert f"entry point 'typo' (ada_hooks.typo) {HOOKS}" in msg
    assert "unknown hook 'ada_registr'" in msg and "Did you mean 'ada_register'?" in msg
    assert loaded["typo"]["error"]["cause"] == "PluginValidationError"


def test_misspelled_hook_is_skipped_with_flag(loaded):
    outcome = loaded["typo_skip"]
    assert "good_edges" in _components(outcome)
    [(plugin, dist, msg)] = outcome["broken"]
    assert (plugin, dist) == ("typo", "ada-hooks") and "'ada_registr'" in msg


def test_module_without_hook_says_what_to_add(loaded):
    msg = _error(loaded["nohook"])
    assert f"entry point 'nohook' (ada_hooks.nohook) {HOOKS} implements no ada_register" in msg
    assert "@hookimpl def ada_register(registry)" in msg


def test_undecorated_hook_says_to_decorate_it(loaded):
    msg = _error(loaded["undecorated"])
    assert f"entry point 'undecorated' (ada_hooks.undecorated) {HOOKS}" in msg
    assert "without the hook marker" in msg and "@hookimpl" in msg


def test_entry_point_to_none_is_refused_not_ignored(loaded):
    # pluggy's register() returns None for a None plugin instead of raising.
    msg = _error(loaded["nothing"])
    assert f"entry point 'nothing' (ada_hooks.nohook:NOTHING) {HOOKS}" in msg
    assert "loaded None" in msg


def test_hook_with_wrong_arguments_wraps_pluggys_validation(loaded):
    msg = _error(loaded["badargs"])
    assert f"entry point 'badargs' (ada_hooks.badargs) {HOOKS} could not be registered" in msg
    assert "{'reg'}" in msg and "ada_register(registry)" in msg
    assert loaded["badargs"]["error"]["cause"] == "PluginValidationError"


def test_two_distributions_with_one_entry_point_name(loaded):
    msg = _error(loaded["twin"])
    assert "entry point 'twin' is declared by 2 distributions" in msg
    assert "ada-twin-one 1.0.0 (ada_twin_one.plugin)" in msg
    assert "ada-twin-two 2.0.0 (ada_twin_two.plugin)" in msg


def test_two_distributions_with_one_name_are_both_skipped(loaded):
    outcome = loaded["twin_skip"]
    components = _components(outcome)
    assert "good_edges" in components
    assert "twin_one" not in components and "twin_two" not in components
    assert sorted((p, d) for p, d, _ in outcome["broken"]) == [
        ("twin", "ada-twin-one"),
        ("twin", "ada-twin-two"),
    ]


def test_entry_point_named_like_the_builtins(loaded):
    msg = _error(loaded["core"])
    assert f"entry point 'core' (ada_hooks.impostor) {HOOKS} could not be registered" in msg
    assert "already taken by ada-seg's built-ins" in msg
    assert loaded["core"]["error"]["cause"] == "ValueError"  # pluggy's own refusal, wrapped


def test_entry_point_named_like_the_builtins_is_skipped_with_flag(loaded):
    outcome = loaded["core_skip"]
    components = _components(outcome)
    assert "impostor" not in components and components["good_edges"][0] == "good"
    assert components["window"][:2] == ("core", "ada-seg")
    assert [(p, d) for p, d, _ in outcome["broken"]] == [("core", "ada-hooks")]


def test_two_entry_points_on_one_module(loaded):
    msg = _error(loaded["alias"])
    assert f"entry point 'alias_b' (ada_hooks.shared) {HOOKS} could not be registered" in msg
    assert f"already registered as entry point 'alias_a' (ada_hooks.shared) {HOOKS}" in msg


def test_two_entry_points_on_one_module_skip_keeps_the_first(loaded):
    outcome = loaded["alias_skip"]
    assert _components(outcome)["shared_edges"] == ("alias_a", "ada-hooks", "0.3.0")
    assert [(p, d) for p, d, _ in outcome["broken"]] == [("alias_b", "ada-hooks")]


def test_plugin_failing_halfway_is_rolled_back_whole(loaded):
    outcome = loaded["halfway_skip"]
    components = _components(outcome)
    assert "halfway_edges" not in components and "good_edges" in components
    [(plugin, _, msg)] = outcome["broken"]
    assert plugin == "halfway" and "RuntimeError: halfway boom" in msg


def test_disabling_an_unknown_name_warns_with_the_installed_names(loaded):
    outcome = loaded["unknown_disabled"]
    assert "good_edges" in _components(outcome)
    [(category, msg)] = outcome["warnings"]
    assert category == "PluginWarning"
    assert "ADA_DISABLE_PLUGINS names 'nosuch'" in msg
    for name in ("'alias_a'", "'good'", "'twin'", "'typo'"):
        assert name in msg
