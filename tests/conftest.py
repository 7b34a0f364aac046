"""Shared fixtures: the real MRI data folder and fake installed distributions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip with the reason when this machine does not have it."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real MRI test data not found at {SHARED_DATA} (see README: Testing)")
    return SHARED_DATA


def make_distribution(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """Write an installed distribution (dist-info with an ``ada`` entry point) under ``root``.

    This is what pip leaves in site-packages; putting ``root`` on sys.path (or PYTHONPATH) makes
    importlib.metadata discover it exactly as it discovers a pip-installed plugin.
    """
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ada]\n{ep_name or module} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Factory: ``fake_dist(dist, module, source)`` installs a fake plugin distribution."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(dist: str, module: str, source: str, ep_name: str | None = None) -> Path:
        make_distribution(root, dist, module, source, ep_name)
        return root

    return make


#: Seeds of the shared tiny study.
STUDY_SEEDS = [0, 1]


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A real 2-seed study with a held-out test person, run once through the CLI.

    Returns ``(run folder, completed process)``. Tests must not modify it: copy it first.
    """
    from studykit import ada_cli, tiny_config, write_config

    out = tmp_path_factory.mktemp("study")
    cfg = write_config(tiny_config(out, seeds=STUDY_SEEDS, test=True), out / "tiny.toml")
    proc = ada_cli("compare", str(cfg), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "tiny", proc
