"""The configs that train on ../shared/data validate as shipped: real.toml, its GPU twin and
the site-robustness twins (each differing from site-none.toml only in standardise)."""

from __future__ import annotations

import tomllib

import pytest
from conftest import REPO

from ada_core.cli import main

CONFIGS = ["real", "real-gpu", "site-none", "site-zscore", "site-histogram"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_on_the_shared_data(name, shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the configs name the data as ../shared/data, from the repository
    code = main(["config", "validate", f"configs/{name}.toml", "--set", f"output={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 labelled subjects" in out


def test_real_twins_train_on_every_labelled_person(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    for name in ("real", "real-gpu"):
        assert main(["config", "validate", f"configs/{name}.toml", "--set",
                     f"output={tmp_path}"]) == 0  # fmt: skip
        # 3 persons: 2 train and 1 selects, none is left out
        assert "train/val/test persons 2/1/0" in capsys.readouterr().out


def test_site_twins_differ_only_in_standardise():
    def load(name):
        return tomllib.loads((REPO / "configs" / f"{name}.toml").read_text())

    base = load("site-none")
    for name, how in (("site-zscore", "zscore_cord"), ("site-histogram", "histogram")):
        other = load(name)
        assert other["data"]["preprocess"].pop("standardise") == how
        assert base["data"]["preprocess"].get("standardise", "none") == "none"
        want = {**base, "name": name, "data": {**base["data"], "preprocess": {
            k: v for k, v in base["data"]["preprocess"].items() if k != "standardise"}}}
        assert other == want
