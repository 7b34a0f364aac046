"""The `ada` command line, run as users run it (a subprocess of the installed script)."""

from __future__ import annotations

import json
import re
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
    assert window["plugin"] == "core" and window["distribution"] == "ada-seg"
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


# --------------------------------------------------------------------------- issue 15


def _small(tmp_path, **train):
    from studykit import tiny_config, write_config

    cfg = tiny_config(tmp_path, name="cli", attributors=[{"name": "gradcam"}, {"name": "none"}],
                      standard_epochs=1, cycles=1, ada_epochs=1, robustness=False, **train)  # fmt: skip
    return write_config(cfg, tmp_path / "cli.toml")


def test_global_flags_and_options_anywhere_on_the_line(tmp_path, capsys):
    path = _small(tmp_path)
    for argv in (
        ["config", "validate", str(path), "--json", "--set", "train.cycles=2", "-v"],
        ["-v", "--debug", "config", "validate", "--set", "train.cycles=2", str(path), "--json"],
        ["config", "validate", "-q", str(path), "--json", "--set=train.cycles=2", "--debug"],
    ):
        code, out, _ = run(capsys, *argv)
        assert code == 0, argv
        shown = json.loads(out)
        assert shown["valid"] is True and shown["config"] == str(path) and "labelled subjects" in shown["data"]
    # --debug after the command still shows the traceback
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\ncycles = -1\n")
    res = ada("config", "validate", str(bad), "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_config_show_lists_every_component_parameter_with_its_default(tmp_path, capsys):
    path = _small(tmp_path)
    sets = ["--set", "attributors[0].params.layer=decoder1",
            "--set", "data.params.gm_jitter_mm=0.5"]  # cue_anchor needs it  # fmt: skip
    code, out, _ = run(capsys, "config", "show", str(path), "--json", *sets,
                       "--set", "train.device=auto")  # (the attributor's amp: CUDA only)
    assert code == 0
    shown = json.loads(out)
    from ada_core.plugins import load_plugins

    registry = load_plugins()
    for kind, spec in [("attributor", shown["attributors"][0]), ("mask", shown["mask"]),
                       ("model", shown["model"]), ("dataset", shown["data"])]:  # fmt: skip
        assert set(spec["params"]) == set(registry.sections[kind].get(spec["name"]).Config.model_fields)
    code, out, _ = run(capsys, "config", "show", str(path), "--json", *sets)  # device = 'cpu'
    assert code == 0 and "amp" not in json.loads(out)["attributors"][0]["params"]
    shown = json.loads(out)
    gradcam = shown["attributors"][0]["params"]
    assert gradcam["layer"] == "decoder1" and gradcam["target"] == "foreground"
    assert shown["attributors"][1] == {"name": "none", "label": None, "params": {"steps": "epochs"}}
    assert shown["mask"]["params"]["size"] == 6 and shown["mask"]["params"]["stride"] == 1
    # The TOML form reads back to the same resolved config (None params become comments).
    code, toml_out, _ = run(capsys, "config", "show", str(path))
    again = tmp_path / "again.toml"
    again.write_text(toml_out)
    code, out2, _ = run(capsys, "config", "show", str(again), "--json")
    assert json.loads(out2) | {"attributors": None} == json.loads(
        run(capsys, "config", "show", str(path), "--json")[1]) | {"attributors": None}
    assert "# label: not set (None)" in toml_out


def test_every_command_has_a_description_an_example_and_the_exit_codes():
    from ada_core.cli import EXIT_FAILED_JOBS, build_parser

    assert EXIT_FAILED_JOBS == 3
    parser = build_parser()
    top = parser.format_help()
    for code, meaning in [("0", "success"), ("2", "bad input"), ("3", "some job failed"),
                          ("130", "interrupted")]:  # fmt: skip
        assert re.search(rf"^  {code}\s+{meaning}", top, re.M), (code, top)

    def walk(p, name):
        subs = [a for a in p._actions if isinstance(a, __import__("argparse")._SubParsersAction)]
        if not subs:
            yield name, p
        for action in subs:
            for child_name, child in action.choices.items():
                yield from walk(child, f"{name} {child_name}")

    commands = dict(walk(parser, "ada"))
    assert {"ada plugins", "ada config validate", "ada config show", "ada config reference", "ada train",
            "ada compare", "ada aggregate", "ada report", "ada predict"} <= set(commands)  # fmt: skip
    for name, p in commands.items():
        text = p.format_help()
        assert p.description and len(p.description) > 20, name
        examples = text.split("examples:\n", 1)[1].split("\n\n")[0]
        assert f"  {name}" in examples, (name, examples)  # an example of this very command
        assert "exit codes:" in text and "--debug" in text and "--verbose" in text, name


def test_plugins_json_into_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([str(ADA), "plugins", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # the reader is gone before ada writes: `ada plugins --json | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    shell = subprocess.run(f"'{ADA}' plugins --json | head -n 2", shell=True, capture_output=True,
                           text=True)  # fmt: skip
    assert shell.stdout.splitlines() == ["{", '  "components": ['] and "Traceback" not in shell.stderr


def test_results_on_stdout_progress_on_stderr_and_in_the_run_log(tmp_path):
    path = _small(tmp_path)
    res = ada("compare", str(path))
    assert res.returncode == 0, res.stderr
    # stdout: the results only
    assert "Verdict" in res.stdout and f"run folder: {tmp_path / 'cli'}" in res.stdout
    assert "standard: epoch" not in res.stdout and "run 'cli' on cpu" not in res.stdout
    # stderr (not a terminal): timestamped lines, no progress bar
    lines = res.stderr.splitlines()
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d standard: epoch 1/1 cycle 0 loss .*", x) for x in lines), lines
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d run 'cli' on cpu: .*", x) for x in lines)
    assert "\r" not in res.stderr and "ep/s" not in res.stderr and "it/s" not in res.stderr
    log = (tmp_path / "cli" / "log" / "ada.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO +ada_core.engine.runlog: gradcam: epoch 1/1", log, re.M)
    # --quiet: warnings only on stderr; the log file still gets everything
    res = ada("-q", "compare", str(path), "--set", "train.standard_epochs=2", "--force")
    assert res.returncode == 0 and "standard: epoch" not in res.stderr, res.stderr
    assert "standard: epoch 2/2" in (tmp_path / "cli" / "log" / "ada.log").read_text()
    # -v: ADA's debug lines on stderr too
    res = ada("compare", str(path), "-v", "--set", "train.standard_epochs=3", "--force")
    assert res.returncode == 0 and " DEBUG: " in res.stderr, res.stderr[-2000:]


def test_set_into_a_list_from_the_command_line_and_index_errors(tmp_path, capsys):
    path = _small(tmp_path)
    code, out, _ = run(capsys, "config", "show", str(path), "--json",
                       "--set", "attributors[-1].label=longer", "--set", "attributors[0].name=vanilla")  # fmt: skip
    shown = json.loads(out)
    assert [a["name"] for a in shown["attributors"]] == ["vanilla", "none"]
    assert shown["attributors"][1]["label"] == "longer"
    code, _, err = run(capsys, "config", "show", str(path), "--set", "attributors[2].name=x")
    assert code == 2 and "Traceback" not in err
    assert "index 2 is out of range: attributors has 2 entries (indices 0..1 or -2..-1)" in err
    assert "--set 'attributors=[...]'" in err


@pytest.mark.parametrize("setting, message", [
    ("study.primary.control=randm", "study.primary.control = 'randm' is not a control branch "
                                    "of this study. Valid choices: 'random'."),
    ("study.primary.set=tset", "study.primary.set = 'tset' is not scored by this study"),
    ("study.primary.metric=dcs", "study.primary.metric = 'dcs' is not a metric of results.csv."),
    ("study.alpha=1.5", "study.alpha: Input should be less than 1"),
])
def test_study_primary_endpoint_is_validated(tmp_path, capsys, setting, message):
    path = tmp_path / "exp.toml"
    path.write_text('[[attributors]]\nname = "gradcam"\n[[attributors]]\nname = "random"\n')
    code, _, err = run(capsys, "config", "validate", str(path), "--set", setting)
    assert code == 2 and message in err, err
    assert run(capsys, "config", "validate", str(path), "--set",
               "study.primary.control=random")[0] == 0
