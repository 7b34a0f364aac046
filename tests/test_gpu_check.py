"""bench/gpu_check.sh --smoke: every step of the GPU check, on the CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_smoke_runs_every_step_and_writes_the_figures(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(figures["raw_step_img_s"]) == {"fp32"}
    assert all(v > 0 for v in figures["raw_step_img_s"].values())
    assert 0 < figures["ada_cycle_fraction"] < 2
    assert figures["seed_minutes"] > 0
    assert "seed_s =" in figures["seed_formula"] and "seed_s =" in done.stdout
    assert figures["suite"]["passed"] > 0
    # The demo's standard phase was read from the job folder seed-0/standard/.
    assert figures["demo"]["standard"] == ["seed-0/standard"]
    assert figures["demo"]["jobs"]["seed-0/standard"]["epoch_s"][0] > 0


def _junit(tmp_path: Path, body: str) -> Path:
    (tmp_path / "test_probe.py").write_text("import pytest\n" + body)
    xml = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    str(tmp_path / "test_probe.py")], cwd=tmp_path, capture_output=True)  # fmt: skip
    return xml


@pytest.mark.parametrize(("body", "ok"), [
    ("def test_a():\n    pass\n", True),
    ("@pytest.mark.skip\ndef test_a():\n    pass\n", False),  # ran nothing
    ("def test_a():\n    pass\ndef test_b():\n    assert False\n", False),
])  # fmt: skip
def test_a_suite_that_ran_no_test_or_failed_one_fails_the_check(tmp_path, body, ok):
    xml = _junit(tmp_path, body)
    done = subprocess.run([sys.executable, str(HELPER), "suite", str(xml), str(tmp_path / "s.json")],
                          capture_output=True, text=True)  # fmt: skip
    assert (done.returncode == 0) == ok, done.stderr
    if not ok:
        assert "gpu_check:" in done.stderr


def test_requirements_are_every_third_party_dependency_of_the_pyproject_files():
    done = subprocess.run([sys.executable, str(HELPER), "requirements"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    listed = set(done.stdout.split())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = {d for d in project["dependencies"] if not d.startswith("torch")}
    expected |= set(project["optional-dependencies"]["test"])
    assert expected <= listed
    assert not any(x.startswith(("torch", "ada-")) for x in listed)
