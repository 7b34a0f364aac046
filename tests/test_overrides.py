"""`--set KEY=VALUE`: dotted keys into tables and lists, whole lists, and the errors."""

from __future__ import annotations

import re

import pytest

from ada_core._overrides import apply_overrides, parse_key, parse_value
from ada_core.config import ExperimentConfig, load_config
from ada_core.errors import ConfigError

DEFAULTS = ExperimentConfig().model_dump(mode="json")


def test_keys_parse_into_names_and_indices():
    assert parse_key("attributors[0].params.layer") == ["attributors", 0, "params", "layer"]
    assert parse_key("a[1][-2].b") == ["a", 1, -2, "b"]
    for bad in ("a..b", "a[x]", "a[0", "a b", ""):
        with pytest.raises(ConfigError, match="is not a key name"):
            parse_key(bad)


def test_values_are_toml_else_strings():
    assert parse_value("3") == 3 and parse_value("false") is False and parse_value("[64, 64]") == [64, 64]
    assert parse_value('["gradcam", "none"]') == ["gradcam", "none"]
    assert parse_value('{name = "vanilla", label = "v"}') == {"name": "vanilla", "label": "v"}
    assert parse_value("decoder2") == "decoder2" and parse_value("/data/x y") == "/data/x y"


def test_an_index_reaches_into_a_list_given_by_names():
    data = {"attributors": ["gradcam", {"name": "vanilla"}]}
    apply_overrides(data, ["attributors[0].params.layer=decoder2", "attributors[-1].label=v2"])
    assert data == {"attributors": [{"name": "gradcam", "params": {"layer": "decoder2"}},
                                    {"name": "vanilla", "label": "v2"}]}  # fmt: skip
    apply_overrides(data, ["attributors[1]=none"])
    assert data["attributors"][1] == "none"


def test_an_index_into_a_list_the_file_does_not_set_starts_from_the_defaults():
    config = load_config(None, ["attributors[2].params.layer=decoder2"])
    assert [a.name for a in config.attributors] == [a["name"] for a in DEFAULTS["attributors"]]
    assert config.attributors[2].name == "gradcam" and config.attributors[2].params == {"layer": "decoder2"}
    assert config.attributors[0].params == {}


def test_a_whole_list_is_replaced():
    config = load_config(None, ['attributors=["gradcam", "none"]', "attributors[1].params.steps=matched"])
    assert [(a.name, a.params) for a in config.attributors] == [("gradcam", {}), ("none", {"steps": "matched"})]
    config = load_config(None, ['attributors=[{name = "vanilla", label = "v"}]'])
    assert config.attributors[0].key == "v"


@pytest.mark.parametrize("override,message", [
    ("attributors[5].params.layer=x",
     "index 5 is out of range: attributors has 5 entries (indices 0..4 or -5..-1); to add or "
     "remove entries, replace the whole list: --set 'attributors=[...]'"),
    ("attributors[-6].label=x", "index -6 is out of range: attributors has 5 entries"),
    ("evaluate[0].label=x", "index 0 is out of range: evaluate has 0 entries (no index is valid)"),
    ("train[0]=1", "train is a table, not a list, so it cannot be indexed; use train.KEY"),
    ("train.cycles[0]=1", "train.cycles is a value (31), not a list, so it cannot be indexed"),
    ("train.cycles", "expected KEY=VALUE"),
])  # fmt: skip
def test_errors_name_the_override_and_say_how_to_fix_it(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert f"override {override!r}" in str(err.value) and message in str(err.value)


def test_a_key_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="train.cycles is a value, not a table"):
        apply_overrides({"train": {"cycles": 1}}, ["train.cycles.x=2"])
    with pytest.raises(ConfigError, match=r"attributors\[0\] is a value, not a table"):
        apply_overrides({"attributors": [[1]]}, ["attributors[0].x=2"])


def test_tilde_removes_a_key_or_list_entry_the_file_sets():
    data = {"train": {"cycles": 1, "lr": 0.1}, "attributors": ["gradcam", "none"]}
    out = apply_overrides(data, ["~train.cycles", "~attributors[0]"])
    assert out == {"train": {"lr": 0.1}, "attributors": ["none"]}
    assert load_config(None, ["train.cycles=4", "~train.cycles"]).train.cycles == 31  # default
    for item, message in [("~train.cycles=3", "~KEY removes a key and takes no value"),
                          ("~train.batch_size", "train.batch_size is not set by the config file"),
                          ("~attributors[2]", "attributors[2] is not set by the config file"),
                          ("~train..x", "is not a key name")]:  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(message)):
            apply_overrides({"train": {"cycles": 1}, "attributors": ["a"]}, [item])
