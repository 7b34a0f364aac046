"""The Python API (ada_core.run, load_run, tables, models) and docs/api.md, executed."""

from __future__ import annotations

import csv
import json
import math
import logging
import re
import shutil
import sys

import pytest

import ada_core
from ada_core.errors import ConfigError, DataError
from conftest import REPO
from studykit import tiny_config


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_docs_api_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """Every python block of docs/api.md, in order, in one namespace, in an empty folder."""
    blocks = _blocks(REPO / "docs" / "api.md")
    assert len(blocks) >= 6
    if not _has("tensorboard"):  # the last block needs the optional tensorboard package
        assert "tensorboard=true" in blocks[-1]
        blocks = blocks[:-1]
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    namespace: dict = {}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/api.md[block {i}]", "exec"), namespace)
    finally:  # the page's logging.basicConfig must not outlive the test
        root.handlers[:], root.level = handlers, level
    assert (tmp_path / "runs" / "api-demo" / "report.html").is_file()
    assert (tmp_path / "seg" / "scan.nii.gz").is_file()  # the case id, as nnU-Net names it
    if _has("tensorboard"):
        assert list((tmp_path / "runs" / "api-tracked" / "tensorboard").rglob("events.*"))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_run_returns_the_result_and_keeps_stdout_for_results(tmp_path, capsys):
    cfg = tiny_config(tmp_path, name="api", attributors=[{"name": "vanilla"}, {"name": "none"}])
    result = ada_core.run(cfg, ["train.cycles=1"], mode="train", quiet=True)
    out, _ = capsys.readouterr()
    assert out == ""  # the engine's status lines are log records, not prints
    assert result.ok and result.run_dir == tmp_path / "api"
    assert [b.label for b in result.summary.branches] == ["standard", "vanilla"]  # train: first
    assert result.report == tmp_path / "api" / "report.html" and result.report.is_file()
    log = (tmp_path / "api" / "log" / "ada.log").read_text()
    assert result.log_file == tmp_path / "api" / "log" / "ada.log"
    assert "run 'api' on cpu" in log and "standard: epoch 2/2" in log
    assert json.loads((tmp_path / "api" / "config.json").read_text())["train"]["cycles"] == 1


def test_run_checks_the_config_before_any_work(tmp_path):
    cfg = tiny_config(tmp_path, name="bad")
    with pytest.raises(ConfigError, match=r"attributors\[0\]\.params\.nope: unknown parameter"):
        ada_core.run(cfg, ["attributors[0].params.nope=1"])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="must be an ExperimentConfig, a mapping or a TOML path"):
        ada_core.run(42)


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study[0]


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_load_run_tables_match_the_run_folder_files(study):
    run = ada_core.load_run(study)
    raw = json.loads((study / "summary.json").read_text())
    assert run.summary.name == raw["name"] and run.branches == [b["label"] for b in raw["branches"]]
    rows = _csv_rows(study / "results.csv")
    results = run.results
    assert len(results) == len(rows)
    want = {(e["branch"], e["set"], e["metric"]): e for e in raw["statistics"]["estimates"]}
    for name, table in run.estimates.items():
        records = table.to_dict("records") if hasattr(table, "to_dict") else table
        for r in records:
            e = want.get((r["branch"], name, r["metric"]))
            if e is not None:
                assert r["mean"] == pytest.approx(e["mean"]) and r["n_seeds"] == e["n_seeds"]
                if e["ci"]:
                    assert r["ci_low"] == pytest.approx(e["ci"]["low"])
                else:  # None, or NaN in a DataFrame
                    assert r["ci_low"] is None or math.isnan(r["ci_low"])
    comps = run.comparisons
    assert len(comps) == len(raw["statistics"]["comparisons"])
    assert len(run.table()) == len(rows)
    assert run.config.name == raw["name"]


def test_tables_without_pandas_are_lists_of_dicts(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    run = ada_core.load_run(study)
    rows = run.results
    assert isinstance(rows, list) and rows == _csv_rows(study / "results.csv")
    val = run.estimates["val"]
    assert isinstance(val, list) and {"branch", "metric", "mean", "ci_low"} <= set(val[0])


def test_tables_with_pandas_are_dataframes(study):
    pd = pytest.importorskip("pandas", reason="pandas is optional (ada-seg[pandas])")
    run = ada_core.load_run(study)
    assert isinstance(run.results, pd.DataFrame) and isinstance(run.estimates["val"], pd.DataFrame)
    rows = _csv_rows(study / "results.csv")
    assert run.results["dsc"].mean() == pytest.approx(
        sum(float(r["dsc"]) for r in rows if r["dsc"]) / sum(1 for r in rows if r["dsc"]))


def test_models_of_a_run_and_clear_errors(study, tmp_path):
    run = ada_core.load_run(study)
    model = run.model("gradcam", seed=1)
    assert not model.training and type(model).name == "unet-paper"
    with pytest.raises(ada_core.InputError, match=r"no branch 'gradcm'\. Valid choices: .*Did you mean 'gradcam'"):
        run.model("gradcm")
    with pytest.raises(ada_core.InputError, match="choose one with --branch"):
        run.model()
    with pytest.raises(DataError, match="no summary.json"):
        ada_core.load_run(tmp_path)


def test_a_failed_job_is_reported_not_raised(study, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(study, copy)
    (copy / "seed-0" / "branches" / "gradcam" / "done.json").unlink()
    key = json.loads((copy / "seed-0" / "branches" / "gradcam" / "key.json").read_text())["key"]
    (copy / "seed-0" / "branches" / "gradcam" / "failed.json").write_text(json.dumps(
        {"status": "failed", "key": key, "error": "boom", "where": "training", "time": "now"}))
    from ada_core.engine import aggregate

    aggregate(copy, n_boot=50)
    with pytest.raises(DataError, match="has not finished"):
        ada_core.load_run(copy).model("gradcam", seed=0)


def test_every_branch_has_every_estimate_on_every_set(study):
    """The regression of issue 20: validation DSC/HSD were n/a for every branch but standard
    whenever the study had a test part."""
    run = ada_core.load_run(study)
    rows = _csv_rows(study / "results.csv")
    on_set = {(r["branch"], r["set"]) for r in rows}
    s = run.summary
    found = {(e.branch, e.set, e.metric): e for e in
             [*(s.statistics.estimates if s.statistics else ()), *s.other_estimates]}
    metrics = [m for m in rows[0] if m in ada_core.quantities.METRICS]
    assert "val" in {st for _, st in on_set} and "test" in {st for _, st in on_set}
    for branch, set_ in on_set:
        for m in metrics:
            e = found.get((branch, set_, m))
            assert e is not None, (branch, set_, m)
            if m == "dsc":
                assert e.mean is not None and e.n_persons > 0, (branch, set_)
