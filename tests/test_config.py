"""Experiment configuration: TOML, overrides and the error messages users see."""

from __future__ import annotations

import pytest

from ada_core.config import ComponentSpec, ExperimentConfig, apply_overrides, load_config
from ada_core.errors import ConfigError, UnknownComponentError
from ada_core.plugins import load_plugins


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_paper_protocol():
    cfg = load_config(None)
    t = cfg.train
    assert (t.standard_epochs, t.cycles, t.ada_epochs, t.batch_size, t.lr) == (100, 31, 30, 16, 1e-3)
    assert [a.name for a in cfg.attributors] == [
        "vanilla", "guided_backprop", "gradcam", "guided_gradcam", "input_x_gradient"
    ]
    assert cfg.augment.rotation_deg == 4.6 and cfg.augment.elastic_alpha == 30
    assert cfg.data.split.val_fraction == 0.2 and cfg.data.preprocess.size == (200, 200)


def test_toml_and_overrides(tmp_path):
    path = write(
        tmp_path,
        """
        name = "x"
        attributors = ["gradcam", {name = "vanilla", label = "v2", params = {target = "all"}}]
        [train]
        cycles = 2
        [data]
        name = "phantom"
        params = {n_subjects = 4}
        """.replace("\n        ", "\n"),
    )
    cfg = load_config(path, ["train.cycles=3", "train.amp=false", "data.params.root=/d/x y",
                             "data.preprocess.size=[64, 64]", "train.lr=5e-4"])
    assert cfg.train.cycles == 3 and cfg.train.amp is False and cfg.train.lr == 5e-4
    assert cfg.data.params == {"n_subjects": 4, "root": "/d/x y"}
    assert cfg.data.preprocess.size == (64, 64)
    assert [a.key for a in cfg.attributors] == ["gradcam", "v2"]
    assert cfg.attributors[1].params == {"target": "all"}


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "[train]\ncycels = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "train.cycels: unknown key; did you mean 'cycles'?" in msg


def test_wrong_type_and_range(tmp_path):
    path = write(tmp_path, '[train]\nbatch_size = "big"\nlr = -1\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "train.batch_size: Input should be a valid integer" in msg and "(got 'big')" in msg
    assert "train.lr: Input should be greater than 0 (got -1)" in msg


def test_choices_are_listed():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.loss=focal"])
    assert "train.loss: Input should be 'dice', 'bce' or 'dice+bce' (got 'focal')" in str(err.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["train.cycles"])
    with pytest.raises(ConfigError, match="train.cycles is a value, not a table"):
        apply_overrides({"train": {"cycles": 1}}, ["train.cycles.x=2"])


def test_duplicate_branch_labels():
    with pytest.raises(ConfigError, match="branch labels must be unique"):
        load_config(None, ['attributors=["gradcam", "gradcam"]'])


def test_unknown_component_lists_valid_and_closest():
    cfg = ExperimentConfig(attributors=[ComponentSpec(name="grdcam")])
    registry = load_plugins()
    with pytest.raises(UnknownComponentError) as err:
        registry.validate_experiment(cfg, source="exp.toml")
    msg = str(err.value)
    assert "exp.toml: attributors[0].name = 'grdcam'" in msg
    assert "unknown attributor 'grdcam'" in msg and "Did you mean 'gradcam'?" in msg
    assert "'vanilla'" in msg  # the valid names are listed


def test_component_params_validated_before_work():
    cfg = ExperimentConfig(mask=ComponentSpec(name="window", params={"sise": 8}))
    with pytest.raises(ConfigError) as err:
        load_plugins().validate_experiment(cfg, source="exp.toml")
    msg = str(err.value)
    assert "mask.params.sise: unknown parameter" in msg and "Did you mean 'size'?" in msg
    cfg = ExperimentConfig(mask=ComponentSpec(name="window", params={"size": 0}))
    with pytest.raises(ConfigError, match=r"mask.params.size: Input should be greater than"):
        load_plugins().validate_experiment(cfg)


def test_to_toml_round_trips_every_shipped_config(tmp_path):
    from conftest import REPO

    from ada_core.config import to_toml

    names = sorted(p.stem for p in (REPO / "configs").glob("*.toml"))
    assert {"demo", "paper", "bids-loso"} <= set(names)
    for name in names:
        cfg = load_config(REPO / "configs" / f"{name}.toml", ["model.params.arch_options={}"])
        path = tmp_path / f"{name}.toml"
        path.write_text(to_toml(cfg, header="resolved"))
        assert load_config(path) == cfg
