"""A setting that would have no effect is refused, never silently ignored (issue 24).

The conditional fields are found by walking the configuration models and every registered
component's ``Config`` for the ``used_when`` / ``used_unless`` tag, so a field tagged later is
covered without touching this file. Each is set alone with its condition false (refused, naming
the field, the condition and both fixes) and with its condition true (accepted), in a file's
data and through ``--set``; ``ada config validate`` and ``ada compare`` refuse the same things
with exit status 2 and no traceback.
"""

from __future__ import annotations

import json
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ada_core.cli import main
from ada_core.config import ExperimentConfig, apply_overrides, load_config, parse_config, to_toml
from ada_core.errors import ConfigError, PluginError
from ada_core.fieldtags import RUN_USES, Condition, active_data, field_conditions, field_uses, used_when
from ada_core.interfaces import Attributor, ComponentConfig
from ada_core.plugins import load_plugins
from ada_core.registry import Registry
from ada_core.splits import SplitConfig

from studykit import tiny_config, write_config

#: A value the field accepts under its condition where its default is none (None cannot be
#: written in TOML) or is refused there (test = 'subjects' needs subjects).
EXAMPLES: dict[str, Any] = {
    "val_site": "site0",
    "test_subjects": ["p1"],
    "test_sites": ["site0"],
    "robustness_size": 8,
    "convergence_at": [1],
    "split": {},
}
#: The evaluate list must have an entry for evaluate[0].KEY to be set.
EVALUATE = 'evaluate=[{name = "phantom", label = "extra"}]'


def _sub_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (arg,) = typing.get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, True
    return None, False


def core_fields(model: type[BaseModel] = ExperimentConfig, prefix: str = "", outer: tuple = ()):
    """(dotted path, model holding it, field name, field, the tagged fields holding it as
    (path, holder, name, field)) of every tagged configuration field."""
    for name, field in model.model_fields.items():
        here = (prefix + name, model, name, field)
        if field_conditions(field):
            yield (*here, outer)
        sub, is_list = _sub_model(field.annotation)
        if sub is not None:
            inner = (*outer, here) if field_conditions(field) else outer
            yield from core_fields(sub, f"{prefix}{name}[0]." if is_list else f"{prefix}{name}.", inner)


def _field_at(model: type[BaseModel], dotted: str) -> FieldInfo:
    *head, last = dotted.split(".")
    for part in head:
        model = _sub_model(model.model_fields[part].annotation)[0]
        assert model is not None, dotted
    return model.model_fields[last]


def _candidates(field: FieldInfo, condition: Condition) -> list[Any]:
    """Values of the field's type: its default, its choices, a few of each kind."""
    ann = field.annotation
    default = field.get_default(call_default_factory=True)
    default = list(default) if isinstance(default, tuple) else default
    if typing.get_origin(ann) is typing.Literal:
        return [default, *typing.get_args(ann)]
    if ann is str:
        return [default, *condition.values]
    if ann is bool:
        return [default, True, False]
    if ann is int:
        return [default, 0, 1, 2]
    if ann is float:
        return [default, 0.0, 0.5]
    if typing.get_origin(ann) is list:
        return [default, [], [0]]
    raise AssertionError(f"no candidate values for a condition on a {ann}; extend _candidates")


def _value(condition: Condition, key_field: FieldInfo, holds: bool) -> Any:
    for value in _candidates(key_field, condition):
        if condition.holds(value) == holds:
            return value
    raise AssertionError(f"no value makes {condition} {'true' if holds else 'false'}")


def _toml(value: Any) -> str:
    return json.dumps(value)  # numbers, booleans, strings, lists, {}: all valid TOML values


def _key_of(c: Condition, path: str, holder: type[BaseModel], name: str,
            top: type[BaseModel]) -> tuple[str, FieldInfo]:  # fmt: skip
    """The full key of a condition of the field at ``path`` and the key's field."""
    if c.absolute:
        return c.key, _field_at(top, c.key)
    return path[: -len(name)] + c.key, holder.model_fields[c.key]


def _make_true(path: str, holder: type[BaseModel], name: str, field: FieldInfo,
               top: type[BaseModel], skip: Condition | None = None) -> list[str]:  # fmt: skip
    """Overrides that make the field's conditions (but ``skip``) true where the default does not."""
    sets = []
    for c in field_conditions(field):
        key, kf = _key_of(c, path, holder, name, top)
        if c != skip and not c.holds(kf.get_default(call_default_factory=True)):
            sets.append(f"{key}={_toml(_value(c, kf, holds=True))}")
    return sets


def _cases(path: str, holder: type[BaseModel], name: str, field: FieldInfo,
           top: type[BaseModel], outer: tuple = ()):  # fmt: skip
    """For each condition: (overrides that make only it false, the condition's full key), and
    the overrides that make every condition true (the holding fields' conditions too)."""
    value = EXAMPLES.get(name, field.get_default(call_default_factory=True))
    value = list(value) if isinstance(value, tuple) else value
    around = [s for o in outer for s in _make_true(*o, top)]  # e.g. evaluate[0].part = 'val'
    refused = []
    for c in field_conditions(field):
        key, kf = _key_of(c, path, holder, name, top)
        sets = [*around, f"{key}={_toml(_value(c, kf, holds=False))}"]
        sets += _make_true(path, holder, name, field, top, skip=c)
        refused.append(([*sets, f"{path}={_toml(value)}"], key))
    accepted = [f"{_key_of(c, path, holder, name, top)[0]}="
                f"{_toml(_value(c, _key_of(c, path, holder, name, top)[1], holds=True))}"
                for c in field_conditions(field)]  # fmt: skip
    return refused, [*around, *accepted, f"{path}={_toml(value)}"]


CORE = list(core_fields())


def test_the_walk_finds_the_conditional_fields_of_every_section():
    paths = {p for p, *_ in CORE}
    assert {"data.split.test_fraction", "data.split.test_subjects", "data.split.test_sites",
            "data.split.test_seed", "data.split.val_site", "data.split.val_fraction",
            "data.split.seed", "evaluate[0].split", "evaluate[0].split.test_fraction",
            "train.seed", "train.average_last", "train.ada_epochs", "train.augment_ada_images",
            "train.robustness_size", "augment.rotation_deg", "augment.elastic_sigma",
            "train.amp", "train.channels_last", "train.fused_adam"} <= paths


@pytest.mark.parametrize(("path", "holder", "name", "field", "outer"), CORE, ids=[c[0] for c in CORE])
def test_a_core_field_is_refused_when_its_condition_is_false(path, holder, name, field, outer):
    refused, accepted = _cases(path, holder, name, field, ExperimentConfig, outer)
    head = [EVALUATE] if path.startswith("evaluate[") else []
    for sets, key in refused:
        expected = f"{path} is set but {key} = "
        # in a file (its data) and through --set: the same refusal
        data = apply_overrides({}, [*head, *sets], ExperimentConfig().model_dump(mode="json"))
        with pytest.raises(ConfigError) as file_error:
            parse_config(data, "c.toml")
        with pytest.raises(ConfigError) as set_error:
            load_config(None, [*head, *sets])
        for error in (file_error, set_error):
            text = str(error.value)
            assert expected in text and f"to use it, or remove {path}" in text, text
    config = load_config(None, [*head, *accepted])  # accepted with its condition true...
    assert name in _holder_of(config, path).model_fields_set
    assert parse_config(tomllib.loads(to_toml(config))) == config  # ...and written back


def _holder_of(config: BaseModel, path: str) -> BaseModel:
    node: Any = config
    for part in path.split(".")[:-1]:
        name, _, index = part.partition("[")
        node = getattr(node, name)
        if index:
            node = node[int(index.rstrip("]"))]
    return node


def _component_fields():
    registry = load_plugins()
    for kind, section in registry.sections.items():
        for entry in section:
            for name, field in entry.cls.Config.model_fields.items():
                if field_conditions(field):
                    yield kind, entry.cls.name, name, field


COMPONENTS = list(_component_fields())
WHERE = {"attributor": "attributors[0]", "mask": "mask", "model": "model", "dataset": "data"}


def test_the_walk_finds_conditional_component_parameters():
    found = {(k, c, n) for k, c, n, _ in COMPONENTS}
    assert {("attributor", "gradcam", "threshold"), ("dataset", "phantom", "cue_offset_mm"),
            ("dataset", "phantom", "cue_radius_mm"), ("dataset", "phantom", "cue_missing_sites"),
            ("dataset", "scgm", "tie"), ("model", "unet-paper", "dropout_kind"),
            ("dataset", "phantom", "cue_anchor")} <= found


@pytest.mark.parametrize(("kind", "component", "name", "field"), COMPONENTS,
                         ids=[f"{c[1]}.{c[2]}" for c in COMPONENTS])  # fmt: skip
def test_a_component_parameter_is_refused_when_its_condition_is_false(kind, component, name, field):
    registry = load_plugins()
    cls = registry.sections[kind].get(component)
    where = WHERE[kind]
    spec = f"{where}.name={_toml(component)}"
    if kind == "attributor":
        spec = f"attributors=[{{name = {_toml(component)}}}]"
    refused, accepted = _cases(f"{where}.params.{name}", cls.Config, name, field, cls.Config)
    for sets, key in refused:
        config = load_config(None, [spec, *sets])  # params are free-form until the registry
        with pytest.raises(ConfigError) as error:
            registry.validate_experiment(config, "c.toml")
        text = str(error.value)
        assert f"{where}.params.{name} is set but {key} = " in text, text
        assert f"to use it, or remove {where}.params.{name}" in text, text
    registry.validate_experiment(load_config(None, [spec, *accepted]), "c.toml")


def test_the_test_policy_message_names_what_is_set_why_and_both_fixes():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["data.split.test_fraction=0.25"])
    assert ("data.split.test_fraction is set but data.split.test = 'none'; set data.split.test "
            "= 'fraction' to use it, or remove data.split.test_fraction") in str(error.value)
    assert "--set '~KEY' removes a KEY that the file sets" in str(error.value)


def test_a_field_set_to_its_default_is_refused_too_but_one_left_unset_never():
    with pytest.raises(ConfigError, match=r"data\.split\.test_fraction is set"):
        parse_config({"data": {"split": {"test_fraction": 0.2}}})
    assert parse_config({}).data.split.test_fraction == 0.2


def test_every_setting_without_effect_is_listed_at_once():
    with pytest.raises(ConfigError) as error:
        parse_config({"data": {"split": {"test_seed": 1, "val_site": "a"}},
                      "train": {"checkpoint": "best", "average_last": 3}})  # fmt: skip
    lines = [x.strip() for x in str(error.value).splitlines()[1:]]
    assert [x.split(" is set")[0] for x in lines] == [
        "data.split.val_site", "data.split.test_seed", "train.average_last"]


def test_the_split_model_refuses_on_its_own_too():
    with pytest.raises(ValueError, match=r"test_seed is set but test = 'none'; set test = "
                                         r"'fraction' to use it, or remove test_seed"):
        SplitConfig(test_seed=3)
    assert SplitConfig(test="fraction", test_seed=3).test_seed == 3


def test_removing_the_file_key_with_tilde_accepts_the_new_choice(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data.split]\ntest = "fraction"\ntest_fraction = 0.3\n')
    with pytest.raises(ConfigError, match="data.split.test_fraction is set"):
        load_config(path, ["data.split.test=none"])
    config = load_config(path, ["data.split.test=none", "~data.split.test_fraction"])
    assert config.data.split.test == "none" and "test_fraction" not in config.data.split.model_fields_set
    with pytest.raises(ConfigError, match=r"~data\.split\.test_seed.*not set by the config file"):
        load_config(path, ["~data.split.test_seed"])


def test_records_that_list_every_value_read_back():
    config = parse_config({"data": {"split": {"test": "subjects", "test_subjects": ["a"]}}})
    data = active_data(config)
    assert "test_fraction" not in data["data"]["split"] and "test_subjects" in data["data"]["split"]
    assert parse_config(data) == config
    full = config.model_dump(mode="json")  # what older runs' config.json holds: every field
    with pytest.raises(ConfigError):
        parse_config(full)
    assert parse_config(full, written_by_ada=True) == config


def test_a_plugin_condition_must_name_one_of_its_own_parameters():
    from pydantic import Field

    class BadConfig(ComponentConfig):
        k: int = Field(1, description="k", json_schema_extra=used_when("mode", "a"))

    class Bad(Attributor):
        name = "bad"
        Config = BadConfig

        def _attribute(self, model, images, masks):
            return images

    with pytest.raises(PluginError, match=r"'k' is used_when 'mode', which is no other field"):
        Registry().attributors.add(Bad)


# --------------------------------------------------------------------- the command line

CLI_CASES = [
    ("data.split.test_fraction=0.25", "data.split.test_fraction is set but data.split.test = 'none'"),
    ("data.split.val_site=site0", "data.split.val_site is set but data.split.method = 'fraction'"),
    ("train.average_last=2", "train.average_last is set but train.checkpoint = 'best'"),
    ("augment.enabled=false", "augment.rotation_deg is set but augment.enabled = false"),
    ("attributors[0].params.target=all", "attributors[0].params.threshold is set but "
                                         "attributors[0].params.target = 'all'"),
    ("train.device=cpu", "train.amp is set but train.device = 'cpu'"),
    ("train.device=cpu:0", "train.amp is set but train.device = 'cpu'"),
    ("augment.p_affine=0", "augment.padding is set but no transform moves a pixel"),
    ("train.control_steps=matched", "train.control_steps is set but no branch takes it"),
    ("attributors=[\"none\"]", "mask.params.stride is set but no branch erases"),
    ("model.label=net", "model.label is set but model is no branch nor [[evaluate]] set"),
    ("data.params.cue_probability=0", "data.params.cue_radius_mm is set but "
                                      "data.params.cue_probability = 0.0"),
]


@pytest.fixture
def cli_config(tmp_path):
    data = tiny_config(tmp_path, attributors=[{"name": "gradcam", "params": {"threshold": 0.4}}])
    data["augment"] = {"rotation_deg": 3.0, "p_elastic": 0.0, "padding": "zeros"}
    data["mask"]["params"]["stride"] = 1  # refused with --set 'attributors=["none"]'
    data["data"]["params"]["cue_radius_mm"] = 1.5  # refused with cue_probability = 0
    data["train"].update(device="auto", amp=False)  # amp: refused with --set train.device=cpu
    return write_config(data, tmp_path / "c.toml")


@pytest.mark.parametrize("command", ["validate", "compare"])
@pytest.mark.parametrize(("override", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_config_validate_and_compare_refuse_the_same_settings(cli_config, capsys, command,
                                                               override, message):  # fmt: skip
    argv = ["config", "validate"] if command == "validate" else ["compare"]
    code = main([*argv, str(cli_config), "--set", override])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err + out, err
    assert not (cli_config.parent / "tiny").exists()  # nothing ran


def test_the_installed_command_refuses_without_a_traceback(cli_config):
    from studykit import ada_cli

    proc = ada_cli("compare", str(cli_config), "--set", "data.split.test_seed=4", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "data.split.test_seed is set but data.split.test = 'none'" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = ada_cli("config", "validate", str(cli_config), "--set", "data.split.test=fraction",
                 "--set", "data.split.test_seed=4", timeout=300)  # fmt: skip
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr


def test_shipped_configs_set_nothing_without_effect():
    registry = load_plugins()
    for path in sorted(Path(__file__).parents[1].glob("configs/*.toml")):
        registry.validate_experiment(load_config(path), str(path))  # the registry's rules too


# ------------------------------------------------------ rules in words (used_if), issue 24

#: Every field with a used_if rule: (where it sits, the overrides that make it have no
#: effect, the overrides under which it has one, the value to set, the start of the message).
RULES: dict[str, tuple[str, list[str], list[str], str, str]] = {
    "augment.padding": ("config", ["augment.p_affine=0", "augment.p_elastic=0"],
                        ["augment.p_affine=0"], '"zeros"', "no transform moves a pixel"),
    "model.params.decoder_channels": (
        "model", ['model.name="smp"', 'model.params.arch="FPN"'],
        ['model.name="smp"', 'model.params.arch="Unet"', "model.params.encoder_depth=3"],
        "[32, 16, 8]", "model.params.arch = 'FPN' has no decoder_channels argument"),
    "train.control_steps": ("registry", ['attributors=["gradcam"]'],
                            ['attributors=["gradcam", "none"]'], '"matched"', "no branch takes it"),
    "train.ddp": ("run", [], [], "false", "this run is one process, not under torchrun"),
    "data.params.n_raters": ("model", ['data.name="scgm"', 'data.params.raters="rater:2"'],
                             ['data.name="scgm"'], "4", "data.params.raters = 'rater:2' reads "
                             "that rater's masks only"),
    "data.params.tie": ("model", ['data.name="scgm"', 'data.params.raters="majority"',
                                  "data.params.n_raters=3"],
                        ['data.name="scgm"', 'data.params.raters="majority"'], '"background"',
                        "data.params.n_raters = 3 is odd"),
    **{f"data.params.{k}": ("model", ["data.params.context_cue=true", "data.params.sites=2",
                                       "data.params.gm_jitter_mm=0.5",
                                       "data.params.cue_missing_sites=[1, 0]"],
                            ["data.params.context_cue=true", "data.params.sites=2",
                             "data.params.gm_jitter_mm=0.5", "data.params.cue_missing_sites=[1]"],
                            v, "every site (0..1, data.params.sites = 2) is in "
                               "data.params.cue_missing_sites, so no scan shows the cue")
       for k, v in (("cue_anchor", '"cord"'), ("cue_offset_mm", "[-6.0, 4.0]"),
                    ("cue_radius_mm", "1.5"), ("cue_probability", "0.5"))},
    "train.augment_ada_images": ("registry", ['attributors=["none"]'],
                                 ['attributors=["none", "random"]'], "false", "no branch erases"),
    "train.save_ada_images": ("registry", ['attributors=["none"]'], ['attributors=["gradcam"]'],
                              "false", "no branch erases"),
    "train.wait_timeout_h": ("run", [], [], "1.0", "this run is one process"),
}


def _ruled_fields() -> set[str]:
    from ada_core.fieldtags import field_rule

    found = {p for p, _holder, name, field, _ in _all_fields() if field_rule(field)}
    for kind, section in load_plugins().sections.items():
        for entry in section:
            for name, field in entry.cls.Config.model_fields.items():
                if field_rule(field) and field_uses(field) is None:  # used_for: MASK_FIELDS
                    found.add(f"{WHERE[kind]}.params.{name}")
    return found


def _all_fields(model: type[BaseModel] = ExperimentConfig, prefix: str = ""):
    for name, field in model.model_fields.items():
        yield prefix + name, model, name, field, ()
        sub, is_list = _sub_model(field.annotation)
        if sub is not None:
            yield from _all_fields(sub, f"{prefix}{name}[0]." if is_list else f"{prefix}{name}.")


def test_every_rule_in_words_has_its_case_here():
    """A field that declares used_if gets a case in RULES; one that loses its tag fails here."""
    assert _ruled_fields() == set(RULES)


def _refusal(config, where: str) -> str:
    from ada_core.engine.distributed import check_processes

    with pytest.raises(ConfigError) as error:
        if where in ("model", "registry"):
            load_plugins().validate_experiment(config, "c.toml")
        else:
            check_processes(None, ddp=config.train.ddp, given=config.train.model_fields_set)
    return str(error.value)


@pytest.mark.parametrize("path", sorted(RULES))
def test_a_rule_in_words_refuses_the_setting_where_it_has_no_effect(path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    where, off, on, value, why = RULES[path]
    head = path.rpartition(".")[0]
    expected = f"{path} is set but "
    if where == "config":
        with pytest.raises(ConfigError) as error:
            load_config(None, [*off, f"{path}={value}"])
        text = str(error.value)
    else:
        text = _refusal(load_config(None, [*off, f"{path}={value}"]), where)
    assert expected in text and why in text and f"to use it, or remove {path}" in text, text
    config = load_config(None, [*on, f"{path}={value}"])
    if where in ("model", "registry"):
        load_plugins().validate_experiment(config, "c.toml")
    if where == "run":  # has an effect under torchrun: accepted there
        from ada_core.engine.distributed import check_processes

        monkeypatch.setenv("WORLD_SIZE", "2")
        check_processes(None, ddp=config.train.ddp, given=config.train.model_fields_set)
    if not head.endswith("params"):  # accepted, and kept as set
        assert path.rpartition(".")[2] in _holder_of(config, path).model_fields_set


def test_control_steps_is_refused_when_every_none_control_sets_its_own_steps():
    registry = load_plugins()
    config = load_config(None, ['attributors=[{name = "none", params = {steps = "epochs"}}]',
                                'train.control_steps="matched"'])  # fmt: skip
    with pytest.raises(ConfigError, match=r"train\.control_steps is set but no branch takes it"):
        registry.validate_experiment(config, "c.toml")
    registry.validate_experiment(load_config(None, ['attributors=["none"]',
                                                    'train.control_steps="matched"']), "c.toml")


def test_wait_timeout_applies_to_shards_and_ddp_only_to_torchrun(monkeypatch):
    from ada_core.engine.distributed import check_processes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_processes("0/2", ddp=False, given={"wait_timeout_h"})  # a shard waits for another
    with pytest.raises(ConfigError, match=r"train\.ddp is set but this run is --shard 0/2, not "
                                          r"under torchrun; start it with torchrun"):
        check_processes("0/2", ddp=False, given={"ddp"})


def test_rules_the_registry_or_the_run_checks_are_written_only_where_set():
    plain = to_toml(load_config(None, []))
    assert "ddp" not in plain and "wait_timeout_h" not in plain and "control_steps" not in plain
    assert parse_config(tomllib.loads(plain)).train.model_fields_set.isdisjoint(
        {"ddp", "wait_timeout_h", "control_steps"})
    kept = to_toml(load_config(None, ["train.wait_timeout_h=5"]))
    assert "wait_timeout_h = 5.0" in kept
    # padding without effect is left out of the record too (it reads back as the same config)
    off = load_config(None, ["augment.p_affine=0", "augment.p_elastic=0"])
    assert "padding" not in to_toml(off) and parse_config(tomllib.loads(to_toml(off))) == off


def test_compare_refuses_a_launch_setting_that_validate_cannot_know(cli_config, capsys,
                                                                     monkeypatch):  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["config", "validate", str(cli_config), "--set", "train.wait_timeout_h=2"]) == 0
    capsys.readouterr()
    assert main(["compare", str(cli_config), "--set", "train.wait_timeout_h=2"]) == 2
    err = capsys.readouterr().err
    assert ("train.wait_timeout_h is set but this run is one process (no torchrun, no --shard); "
            "start it with torchrun or as --shard I/N to use it, or remove "
            "train.wait_timeout_h") in err
    assert not (cli_config.parent / "tiny").exists()


# ----------------------------------------------------------------- settings for CUDA only


@pytest.mark.parametrize("cpu", ["cpu", "cpu:0", "cpu:3"])  # any index is the one CPU
def test_the_paper_config_on_the_cpu_names_its_cuda_settings_and_both_fixes(capsys, cpu):
    paper = str(Path(__file__).parents[1] / "configs" / "paper.toml")
    assert main(["config", "validate", paper, "--set", f"train.device={cpu}"]) == 2
    err = capsys.readouterr().err
    for key in ("train.amp", "train.channels_last"):
        assert (f"{key} is set but train.device = 'cpu'; set train.device to a value other than "
                f"'cpu' to use it, or remove {key}") in err, err
    assert "--set '~KEY' removes a KEY that the file sets" in err
    assert "train.fused_adam" not in err  # the file leaves it unset
    config = load_config(paper, [f"train.device={cpu}", "~train.amp", "~train.channels_last"])
    assert config.train.device == "cpu"
    assert load_config(None, ["train.device=cuda:1"]).train.device == "cuda:1"  # left as written


def test_auto_on_a_machine_without_cuda_warns_and_names_the_keys():
    import torch

    from ada_core.engine.plan import cuda_only_notes

    train = load_config(None, ["train.amp=true", "train.fused_adam=false"]).train
    (note,) = cuda_only_notes(train, torch.device("cpu"))
    assert note.startswith("train.amp, train.fused_adam are set but train.device = 'auto' "
                           "resolves to the CPU on this machine")
    assert "--set '~train.amp' --set '~train.fused_adam'" in note
    assert cuda_only_notes(train, torch.device("cuda", 0)) == ()
    assert cuda_only_notes(load_config(None, []).train, torch.device("cpu")) == ()  # none set


def test_validate_warns_under_auto_without_cuda(cli_config, capsys, caplog):
    import torch

    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here; the note itself is tested above")
    assert main(["config", "validate", str(cli_config)]) == 0
    said = capsys.readouterr().err + caplog.text
    # the file was written by to_toml, which lists every value: all three are set
    assert ("train.amp, train.channels_last, train.fused_adam are set but train.device = "
            "'auto' resolves to the CPU") in said


# --------------------------------------------- what only the components tell (the registry)

#: Overrides (in a file's data; None cannot be written in TOML) that make each mask use false
#: or true, the others left at the defaults (which have all three).
USE_OFF = {"erase": {"attributors": ["none"]}, "robustness_square": {"train": {"robustness_size": 8}},
           "context_fill": {"train": {"context_margin_mm": None}}}  # fmt: skip
USE_ON = {"erase": {"attributors": ["random"]}}


def _mask_fields():
    for entry in load_plugins().masks:
        for name, field in entry.cls.Config.model_fields.items():
            yield entry.cls.name, name, field


MASK_FIELDS = list(_mask_fields())


def _with(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def test_the_window_declares_what_each_parameter_is_for():
    uses = {name: field_uses(field) for builder, name, field in MASK_FIELDS if builder == "window"}
    assert uses == {"size": ("erase", "robustness_square"), "stride": ("erase",),
                    "regions": ("erase",), "gt_policy": ("erase",),
                    "fill": ("erase", "context_fill")}  # fmt: skip


@pytest.mark.parametrize(("builder", "name", "field"), MASK_FIELDS,
                         ids=[f"{b}.{n}" for b, n, _ in MASK_FIELDS])  # fmt: skip
def test_a_mask_parameter_is_refused_when_the_run_uses_the_builder_for_nothing_it_serves(
        builder, name, field):  # fmt: skip
    registry = load_plugins()
    uses = field_uses(field) or tuple(RUN_USES)
    value = field.get_default(call_default_factory=True)
    mask = {"mask": {"name": builder, "params": {name: value}}}
    off = _with(*(USE_OFF[u] for u in uses), mask)
    with pytest.raises(ConfigError) as error:
        registry.validate_experiment(parse_config(off), "c.toml")
    text = str(error.value)
    assert f"mask.params.{name} is set but " in text and f"or remove mask.params.{name}" in text
    for use in uses:  # any one use it serves gives it an effect
        on = _with(*(USE_OFF[u] for u in uses if u != use), USE_ON.get(use, {}), mask)
        registry.validate_experiment(parse_config(on), "c.toml")


def test_the_mask_message_names_every_reason_and_the_first_fix():
    config = parse_config({"attributors": ["none"], "train": {"robustness": False},
                           "mask": {"name": "window", "params": {"size": 8}}})  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_plugins().validate_experiment(config, "c.toml")
    assert ("mask.params.size is set but no branch erases (attributors: 'none'; the `none` "
            "control erases nothing) and train.robustness = false; add an attributor that "
            "erases (e.g. 'gradcam' or 'random') to attributors to use it, or remove "
            "mask.params.size") in str(error.value)


def test_the_mask_itself_is_refused_only_when_the_run_uses_it_for_nothing():
    registry = load_plugins()
    off = {"attributors": ["none"], "mask": {"name": "window"},
           "train": {"robustness": False, "context_margin_mm": None}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"\n  mask is set but no branch erases .* or remove mask$"):
        registry.validate_experiment(parse_config(off), "c.toml")
    registry.validate_experiment(parse_config(_with(off, {"train": {"robustness": True}})), "c.toml")


def test_random_erasing_uses_the_mask_and_the_none_control_does_not():
    registry = load_plugins()
    assert registry.attributors.get("random").erases and not registry.attributors.get("none").erases
    sets = ['mask.name="window"', "mask.params.regions=2"]
    registry.validate_experiment(load_config(None, ['attributors=["random"]', *sets]), "c.toml")
    registry.validate_experiment(load_config(None, ['attributors=["none", "gradcam"]', *sets]),
                                 "c.toml")  # fmt: skip
    with pytest.raises(ConfigError, match=r"mask\.params\.regions is set but no branch erases"):
        registry.validate_experiment(load_config(None, ['attributors=["none"]', *sets]), "c.toml")


def _first_plain_param(entry) -> str | None:
    from ada_core.fieldtags import field_rule

    for name, field in entry.cls.Config.model_fields.items():
        if not field_conditions(field) and field_rule(field) is None and not field.is_required():
            return name
    return None


ATTRIBUTOR_PARAMS = [(e.cls.name, p) for e in load_plugins().attributors
                     if (p := _first_plain_param(e)) is not None]  # fmt: skip


@pytest.mark.parametrize(("attributor", "param"), ATTRIBUTOR_PARAMS,
                         ids=[a for a, _ in ATTRIBUTOR_PARAMS])  # fmt: skip
def test_a_branch_parameter_is_refused_without_cycles(attributor, param):
    registry = load_plugins()
    value = registry.attributors.get(attributor).Config.model_fields[param].get_default(
        call_default_factory=True)
    spec = {"name": attributor, "params": {param: value}}
    data = {"attributors": [spec], "train": {"cycles": 0}}
    with pytest.raises(ConfigError) as error:
        registry.validate_experiment(parse_config(data), "c.toml")
    key = f"attributors[0].params.{param}"
    assert (f"{key} is set but train.cycles = 0 (no branch trains); set train.cycles to a "
            f"value other than 0 to use it, or remove {key}") in str(error.value)
    registry.validate_experiment(parse_config({"attributors": [spec]}), "c.toml")


def test_control_steps_is_refused_without_cycles():
    config = load_config(None, ['attributors=["none"]', "train.control_steps=matched",
                                "train.cycles=0"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"train\.control_steps is set but train\.cycles = 0"):
        load_plugins().validate_experiment(config, "c.toml")


def _gpu_params():
    registry = load_plugins()
    for kind, section in registry.sections.items():
        for entry in section:
            for name, field in entry.cls.Config.model_fields.items():
                if kind != "mask" and field_uses(field):
                    yield kind, entry.cls.name, name, field


GPU_PARAMS = list(_gpu_params())


def test_the_walk_finds_the_gpu_only_parameters():
    assert {("attributor", "gradcam", "amp"), ("attributor", "vanilla", "amp")} <= {
        (k, c, n) for k, c, n, _ in GPU_PARAMS}
    assert all(field_uses(f) == ("cuda",) for *_, f in GPU_PARAMS)


@pytest.mark.parametrize(("kind", "component", "name", "field"), GPU_PARAMS,
                         ids=[f"{c}.{n}" for _, c, n, _ in GPU_PARAMS])  # fmt: skip
@pytest.mark.parametrize("cpu", ["cpu", "cpu:0"])
def test_a_gpu_only_parameter_is_refused_on_the_cpu(kind, component, name, field, cpu):
    registry = load_plugins()
    where = WHERE[kind]
    spec = (f"attributors=[{{name = {_toml(component)}, params = {{{name} = "
            f"{_toml(field.get_default())}}}}}]" if kind == "attributor" else
            f"{where}.params.{name}={_toml(field.get_default())}")  # fmt: skip
    key = f"{where}.params.{name}"
    config = load_config(None, [spec, f"train.device={cpu}"])
    with pytest.raises(ConfigError) as error:
        registry.validate_experiment(config, "c.toml")
    assert (f"{key} is set but train.device = 'cpu'; set train.device to a value other than "
            f"'cpu' to use it, or remove {key}") in str(error.value)
    registry.validate_experiment(load_config(None, [spec, "train.device=cuda"]), "c.toml")


@pytest.mark.parametrize("key", ["data", "model", "mask"])
def test_a_label_is_refused_where_nothing_is_named(key):
    name = {"data": "phantom", "model": "unet-paper", "mask": "window"}[key]
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"{key}.name={name}", f"{key}.label=x"])
    assert (f"{key}.label is set but {key} is no branch nor [[evaluate]] set, and a label names "
            "only those; move it to an entry of attributors or [[evaluate]] to use it, or "
            f"remove {key}.label") in str(error.value)
    named = load_config(None, ['attributors=[{name = "gradcam", label = "g"}]',
                               'evaluate=[{name = "phantom", label = "extra"}]'])  # fmt: skip
    assert named.attributors[0].key == "g" and named.evaluate[0].key == "extra"


def test_train_mode_names_the_attributors_it_does_not_run():
    from ada_core.engine import build_plan
    from ada_core.plugins import load_plugins

    config = load_config(None, ['attributors=["gradcam", "random", "none"]'])
    registry = load_plugins()
    notes = build_plan(config, registry, mode="train").notes
    assert [b.label for b in build_plan(config, registry, mode="train").branches] == ["gradcam"]
    assert ("ada train runs one ADA branch, attributors[0] (gradcam); the other 2 listed "
            "(random, none) are not run: `ada compare` runs every attributor") in notes
    assert not any("ada train" in n for n in build_plan(config, registry).notes)  # compare runs all
    one = load_config(None, ['attributors=["gradcam"]'])
    assert not any("ada train" in n for n in build_plan(one, registry, mode="train").notes)


def test_an_attributors_amp_under_auto_without_cuda_is_warned_with_its_key():
    import torch

    from ada_core.engine import build_plan
    from ada_core.plugins import load_plugins

    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here: nothing to warn about")
    config = load_config(None, ['attributors=[{name = "gradcam", params = {amp = true}}, "none"]'])
    notes = build_plan(config, load_plugins()).notes
    assert ("attributors[0].params.amp is set but train.device = 'auto' resolves to the CPU on "
            "this machine, where it has no effect; run on a CUDA machine to use it, or remove "
            "it (--set '~attributors[0].params.amp')") in notes
    plain = load_config(None, ['attributors=["gradcam", "none"]'])
    assert not any("params.amp" in n for n in build_plan(plain, load_plugins()).notes)
