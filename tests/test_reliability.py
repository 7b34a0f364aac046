"""Runs that nothing can corrupt (issue 12): every guarantee of docs/reliability.md, tested.

Safe checkpoint loading is tested in test_engine.py (a pickle that would write a file is
refused and the file is not written); bit-exact resume after an interruption too.
"""

from __future__ import annotations

import errno
import re
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from studykit import ROOT, metrics_rows, tiny_config, write_config

from ada_core import Attributor, ComponentConfig
from ada_core.cli import main
from ada_core.config import parse_config
from ada_core.engine import run_study
from ada_core.runfolder import RunLayout, RunLock, RunLockedError, move_aside
from ada_core.errors import ConfigError, DataError
from ada_core.plugins import load_plugins
from ada_core.testing.models import TinySegModel


def quick(tmp_path: Path, name: str = "r", attributors=("vanilla", "none"), **train) -> dict:
    train = {"standard_epochs": 1, "cycles": 1, "ada_epochs": 1, "robustness": False, **train}
    return tiny_config(tmp_path, name, attributors=list(attributors), **train)


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", "../escape"), ("name", "/etc"), ("label", "/tmp/x"), ("label", "a/../../b"), ("label", "..")],
)
def test_names_and_labels_must_be_path_safe(tmp_path, key, value):
    data = quick(tmp_path)
    if key == "name":
        data["name"] = value
        where = "name"
    else:
        data["attributors"] = [{"name": "vanilla", "label": value}]
        where = "attributors"
    with pytest.raises(ConfigError, match=rf"{where}.*is not a path-safe name: use 1-64 characters"):
        parse_config(data)


def test_the_engine_moves_nothing_outside_its_run_folder(tmp_path):
    run = tmp_path / "run"
    outside = tmp_path / "precious"
    outside.mkdir(parents=True)
    (outside / "data.txt").write_text("keep me")
    run.mkdir()
    with pytest.raises(DataError, match="not inside the run folder"):
        move_aside(RunLayout(run), run / ".." / "precious")
    assert (outside / "data.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- lock


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path, capsys):
    data = quick(tmp_path, "locked")
    run = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from ada_core.runfolder import RunLock\n"
         f"with RunLock(Path({str(run)!r})):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"in use .*PID {holder.pid} on host "):
            run_study(parse_config(data), load_plugins(), quiet=True)
        cfg = write_config(data, tmp_path / "c.toml")
        assert main(["compare", str(cfg), "--quiet"]) == 2
        assert f"PID {holder.pid}" in capsys.readouterr().err
        assert not (run / "seed-0").exists()  # nothing was started
    finally:
        holder.kill()
        holder.wait()
    # The OS released the lock with the killed process: the run goes ahead.
    assert run_study(parse_config(data), load_plugins(), quiet=True).failed == []
    with RunLock(run):  # and a finished run leaves it free
        pass


# --------------------------------------------------------------------------- changed settings


def test_changed_settings_are_refused_with_the_difference_and_force_keeps_the_old(tmp_path):
    run = run_study(parse_config(quick(tmp_path, lr=0.01)), load_plugins(), quiet=True).run_dir
    before = mtimes(run / "seed-0")
    with pytest.raises(ConfigError, match=r"(?s)standard \(seed 0\).*settings\.train\.lr: 0\.01 -> 0\.02"
                       r".*--force to keep the old results aside"):  # fmt: skip
        run_study(parse_config(quick(tmp_path, lr=0.02)), load_plugins(), quiet=True)
    assert mtimes(run / "seed-0") == before  # nothing touched
    with pytest.raises(ConfigError, match=r"vanilla \(seed 0\).*\n.*train\.cycles: 1 -> 2"):
        run_study(parse_config(quick(tmp_path, lr=0.01, cycles=2)), load_plugins(), quiet=True)
    run_study(parse_config(quick(tmp_path, lr=0.02)), load_plugins(), quiet=True, force=True)
    (kept,) = list((run / ".superseded").iterdir())
    old = json.loads((kept / "seed-0" / "standard" / "key.json").read_text())
    assert old["settings"]["settings"]["train"]["lr"] == 0.01  # the old results, kept aside
    assert (kept / "seed-0" / "branches" / "vanilla" / "best.pt").is_file()
    new = json.loads((run / "seed-0" / "standard" / "key.json").read_text())
    assert new["settings"]["settings"]["train"]["lr"] == 0.02


def test_unchanged_finished_jobs_are_reused_and_new_branches_added(tmp_path, capsys):
    run = run_study(parse_config(quick(tmp_path)), load_plugins(), quiet=True).run_dir
    before = mtimes(run / "seed-0")
    capsys.readouterr()
    run_study(parse_config(quick(tmp_path, attributors=("vanilla", "none", "gradcam"))),
              load_plugins(), quiet=True)  # fmt: skip
    out = capsys.readouterr().out
    assert "standard (seed 0): reusing the finished job" in out
    assert "vanilla (seed 0): reusing" in out and "gradcam (seed 0): reusing" not in out
    after = mtimes(run / "seed-0")
    assert {k: v for k, v in after.items() if k in before and "eval/" not in k} == {
        k: v for k, v in before.items() if "eval/" not in k}  # fmt: skip
    assert (run / "seed-0" / "branches" / "gradcam" / "done.json").is_file()


# --------------------------------------------------------------------------- corrupt files


def test_corrupt_standard_checkpoint_is_repaired_from_the_previous_one(tmp_path, capsys):
    data = quick(tmp_path, standard_epochs=2, checkpoint_every=1)
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    last = run / "seed-0" / "standard" / "last.pt"
    good = torch.load(last, weights_only=True)["model"]
    last.write_bytes(last.read_bytes()[:100])
    capsys.readouterr()
    with pytest.warns(UserWarning, match="previous checkpoint"):
        run_study(parse_config(quick(tmp_path, standard_epochs=2, checkpoint_every=1,
                                     attributors=("vanilla", "none", "gradcam"))),
                  load_plugins(), quiet=True)  # fmt: skip
    assert "training its last epoch(s) again from last.prev.pt" in capsys.readouterr().out
    repaired = torch.load(last, weights_only=True)["model"]
    assert all(torch.equal(good[k], repaired[k]) for k in good)


def test_a_corrupt_only_checkpoint_is_repaired_by_training_the_phase_again(tmp_path, capsys):
    # standard_epochs < checkpoint_every: the phase wrote one last.pt, at its end, and no
    # previous version; the repair trains the whole phase again from its seed
    data = quick(tmp_path, standard_epochs=3, checkpoint_every=5)
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    folder = run / "seed-0" / "standard"
    assert not (folder / "last.prev.pt").exists()
    good = torch.load(folder / "last.pt", weights_only=True)
    (folder / "last.pt").write_bytes(b"torn")
    capsys.readouterr()
    run_study(parse_config(quick(tmp_path, standard_epochs=3, checkpoint_every=5,
                                 attributors=("vanilla", "none", "gradcam"))),
              load_plugins(), quiet=True)  # fmt: skip
    assert "training the phase again from its start" in capsys.readouterr().out
    assert (folder / "last.damaged.pt").read_bytes() == b"torn"  # kept, never deleted
    repaired = torch.load(folder / "last.pt", weights_only=True)
    assert repaired["epoch"] == good["epoch"] == 3
    assert all(torch.equal(good["model"][k], repaired["model"][k]) for k in good["model"])


def test_unreadable_selected_checkpoint_is_found_before_any_training(tmp_path):
    run = run_study(parse_config(quick(tmp_path)), load_plugins(), quiet=True).run_dir
    (run / "seed-0" / "standard" / "best.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"(?s)damaged files:.*standard \(seed 0\).*best\.pt"
                       r".*--force"):  # fmt: skip
        run_study(parse_config(quick(tmp_path, attributors=("vanilla", "none", "gradcam"))),
                  load_plugins(), quiet=True)  # fmt: skip
    assert not (run / "seed-0" / "branches" / "gradcam").exists()


@pytest.mark.parametrize("damage", ["torn best.pt", "corrupt done.json", "truncated rows.csv"])
def test_the_recovery_a_message_advises_works(tmp_path, capsys, damage):
    """Issue 19 item 1: the option a refusal names (--force, --resume) recovers the run."""
    data = quick(tmp_path)
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    std = run / "seed-0" / "standard"
    results = (run / "results.csv").read_text()
    if damage == "torn best.pt":
        (std / "best.pt").write_bytes((std / "best.pt").read_bytes()[:200])
        option, said = "force", "--force"
    elif damage == "corrupt done.json":
        (std / "done.json").write_text('{"status": "done", "key": ')
        option, said = "force", "--force"
    else:
        [rows] = list(std.glob("eval/*/rows.csv"))
        rows.write_text("".join(rows.read_text().splitlines(keepends=True)[:-3]))  # whole lines lost
        option, said = "resume", "--resume"
    with pytest.raises(ConfigError, match=said) as refused:
        run_study(parse_config(data), load_plugins(), quiet=True)
    assert "best.pt" in str(refused.value) or "done.json" in str(refused.value) or \
        "rows.csv" in str(refused.value)
    run_study(parse_config(data), load_plugins(), quiet=True, **{option: True})
    assert (run / "results.csv").read_text() == results  # the same numbers, computed again
    kept = list((run / ".superseded").rglob("*"))
    assert kept, "the damaged files were kept aside, not deleted"


# --------------------------------------------------------------------------- failed branches


class NaNConfig(ComponentConfig):
    pass


class NaNAttributor(Attributor):
    """Returns NaN saliency: its branch must fail alone."""

    name: ClassVar[str] = "nan_saliency"
    Config = NaNConfig

    def _attribute(self, model, images, masks):
        return torch.full_like(images, float("nan"))


def test_a_failing_branch_is_isolated_and_reported(tmp_path, capsys):
    registry = load_plugins()
    registry.attributors.add(NaNAttributor)
    data = quick(tmp_path, attributors=("nan_saliency", "vanilla", "random", "none"))
    result = run_study(parse_config(data), registry, quiet=True)
    assert len(result.failed) == 1 and "nan_saliency (seed 0) failed" in result.failed[0]
    run = result.run_dir
    failed = json.loads((run / "seed-0" / "branches" / "nan_saliency" / "failed.json").read_text())
    assert failed["cycle"] == 1 and "returned NaN or infinite saliency" in failed["error"]
    summary = json.loads((run / "summary.json").read_text())
    status = {b["label"]: b["status"] for b in summary["branches"]}
    assert status == {"standard": "done", "nan_saliency": "failed", "vanilla": "done",
                      "random": "done", "none": "done"}  # fmt: skip
    assert not summary["complete"]
    assert any(m.startswith("nan_saliency: seed 0: failed") for m in summary["missing"])
    assert "nan_saliency" not in {r for c in summary["statistics"]["comparisons"] for r in [c["branch"]]}
    assert "nan_saliency" in (run / "summary.txt").read_text()  # listed as failed, not as DSC 0


SENTINEL = -1234.5


class NaNOnErased(TinySegModel):
    """Returns NaN logits for images holding the sentinel fill: NaN loss in ADA branches only."""

    name: ClassVar[str] = "nan_on_erased"

    def forward(self, x):
        out = super().forward(x)
        hit = (x == SENTINEL).flatten(1).any(1)
        return torch.where(hit[:, None, None, None], torch.full_like(out, float("nan")), out)


def test_a_non_finite_loss_stops_its_branch_and_the_cli_exits_3(tmp_path, capsys, monkeypatch):
    import ada_core.plugins

    registry = load_plugins()
    registry.models.add(NaNOnErased)
    monkeypatch.setattr(ada_core.plugins, "load_plugins", lambda **kw: registry)
    data = quick(tmp_path, cycles=2, augment_ada_images=False)
    data["model"] = {"name": "nan_on_erased"}
    data["mask"]["params"]["fill"] = SENTINEL
    cfg = write_config(data, tmp_path / "nan.toml")
    code = main(["compare", str(cfg), "--quiet"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "vanilla (seed 0) failed during training" in captured.err
    failed = json.loads((tmp_path / "r/seed-0/branches/vanilla/failed.json").read_text())
    assert failed["cycle"] == 1 and failed["epoch"] == 1
    assert "the training loss became nan in cycle 1, epoch 1" in failed["error"]
    assert "last good checkpoint" in failed["error"]
    assert len(metrics_rows(tmp_path / "r/seed-0/branches/none")) == 2  # the control trained on
    assert (tmp_path / "r/report.html").is_file()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("train.lr", "inf", r"train\.lr"),
    ("mask.params.fill", "nan", r"mask\.params\.fill"),
    ("train.robustness_size", "40", r"train\.robustness_size = 40 is larger than the 32x32"),
    ("mask.params.size", "40", r"mask\.params\.size = 40 is larger than the 32x32"),
    ("train.device", "cuda:7", r"train\.device"),
    ("train.checkpoint", '"average"', r"train\.average_last = 5 is larger than train\.standard_epochs = 1"),
    ("train.convergence_at", "[9]", r"train\.convergence_at = \[9\]: epochs \[9\] are past the end"),
    ("train.seeds", "[1, 1]", r"seeds must be unique"),
])  # fmt: skip
def test_validate_checks_what_a_run_checks(tmp_path, capsys, key, value, message):
    if key == "train.device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    data = quick(tmp_path)
    if key == "train.robustness_size":
        data["train"]["robustness"] = True  # the size is refused outright without robustness
    cfg = write_config(data, tmp_path / "v.toml")
    assert main(["config", "validate", str(cfg), "--set", f"{key}={value}"]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert main(["compare", str(cfg), "--quiet", "--set", f"{key}={value}"]) == 2
    assert not (tmp_path / "r" / "seed-0").exists()  # refused before the standard phase


# --------------------------------------------------------------------------- OS faults


def test_config_path_faults_are_clear(tmp_path, capsys):
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert main(["config", "validate", str(tmp_path / "folder.toml")]) == 2
    assert "is a folder; give the path of a TOML config file" in capsys.readouterr().err
    assert main(["config", "validate", str(tmp_path / "latin1.toml")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    data = quick(tmp_path / "file")
    cfg = write_config(data, tmp_path / "o.toml")
    assert main(["compare", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot use" in err and "Traceback" not in err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_faults_exit_2_and_keep_finished_work(tmp_path, capsys, monkeypatch, code):
    import ada_core.runfolder._io as ck

    cfg = write_config(quick(tmp_path, cycles=2), tmp_path / "d.toml")
    real, calls = ck.torch.save, []

    def failing(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > 4:
            raise OSError(code, os.strerror(code), str(f))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", failing)
    assert main(["compare", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    advice = {errno.ENOSPC: "disk is full", errno.EROFS: "read-only", errno.EACCES: "permission denied"}
    assert advice[code] in err
    assert "Traceback" not in err
    monkeypatch.setattr(ck.torch, "save", real)
    # what was written is intact: the interrupted run continues
    assert main(["compare", str(cfg), "--quiet", "--resume"]) == 0


def test_ctrl_c_exits_130_with_the_resume_command_and_temporaries_are_cleaned(tmp_path):
    data = quick(tmp_path, "ctrlc", standard_epochs=30)
    cfg = write_config(data, tmp_path / "c.toml")
    proc = subprocess.Popen([sys.executable, "-m", "ada_core.cli", "compare", str(cfg), "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    log = tmp_path / "ctrlc" / "seed-0" / "standard" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and log.read_text().count("\n") >= 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Continue with: ada compare" in err and "--resume" in err and "Traceback" not in err
    stale = tmp_path / "ctrlc" / "seed-0" / "standard" / ".last.pt.tmp99999"
    stale.write_bytes(b"half a checkpoint from a killed process")
    assert main(["compare", str(cfg), "--quiet", "--resume", "--set", "train.standard_epochs=30"]) == 0
    assert not stale.exists()
    assert len(metrics_rows(tmp_path / "ctrlc" / "seed-0" / "standard")) == 30


def test_validate_checks_the_gradcam_layer_against_the_model(tmp_path, capsys):
    cfg = write_config(quick(tmp_path, attributors=("gradcam", "none")), tmp_path / "g.toml")
    bad = ["--set", "attributors[0].params.layer=nope"]
    assert main(["config", "validate", str(cfg), *bad]) == 2
    err = capsys.readouterr().err
    assert "attributors[0] ('gradcam')" in err and "layer 'nope' is not an attribution layer" in err
    assert "'bottleneck'" in err  # the valid layers are listed
    assert main(["compare", str(cfg), "--quiet", *bad]) == 2
    assert not (tmp_path / "r" / "seed-0").exists()  # refused before the standard phase


# --------------------------------------------------------------------------- the run folder (issue 19)


def test_a_shard_with_other_settings_is_refused_with_the_difference(tmp_path):
    run_study(parse_config(quick(tmp_path)), load_plugins(), quiet=True, shard="0/2")
    with pytest.raises(ConfigError, match=r"(?s)this shard's settings differ from the study.*"
                       r"train\.cycles: 1 -> 2.*same config and --set values"):  # fmt: skip
        run_study(parse_config(quick(tmp_path, cycles=2)), load_plugins(), quiet=True, shard="1/2")
    run_study(parse_config(quick(tmp_path)), load_plugins(), quiet=True, shard="1/2")  # same: fine


def test_force_keeps_every_run_level_file_and_the_superseded_folder_is_a_run(tmp_path, capsys):
    cfg1 = write_config(quick(tmp_path, cycles=1), tmp_path / "a.toml")
    cfg2 = write_config(quick(tmp_path, cycles=2), tmp_path / "b.toml")
    assert main(["compare", str(cfg1), "--quiet"]) == 0
    run = tmp_path / "r"
    names = ["config.toml", "config.json", "study.json", "results.csv", "summary.json",
             "summary.txt", "report.html"]  # fmt: skip
    old = {n: (run / n).read_bytes() for n in names}
    assert main(["compare", str(cfg2), "--quiet", "--force"]) == 0
    (kept,) = list((run / ".superseded").iterdir())
    assert {n: (kept / n).read_bytes() for n in names} == old  # nothing overwritten: kept aside
    assert (run / "study.json").read_bytes() != old["study.json"]
    # the reused standard phase is linked in, so the superseded folder aggregates by itself
    assert (kept / "seed-0" / "standard" / "best.pt").is_file()
    assert main(["aggregate", str(kept)]) == 0
    assert (kept / "results.csv").read_bytes() == old["results.csv"]
    assert main(["report", str(kept)]) == 0
    assert (run / "seed-0" / "standard" / "best.pt").stat().st_ino == \
        (kept / "seed-0" / "standard" / "best.pt").stat().st_ino  # a hard link, not a copy


def test_aggregate_checks_every_rows_file_before_replacing_results(tmp_path, capsys):
    run = run_study(parse_config(quick(tmp_path)), load_plugins(), quiet=True).run_dir
    before = (run / "results.csv").read_bytes()
    [rows] = list((run / "seed-0" / "branches" / "vanilla").glob("eval/*/rows.csv"))
    rows.write_text(rows.read_text()[: len(rows.read_text()) // 2])  # cut mid-line
    assert main(["aggregate", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{rows} is damaged" in err and "results.csv was left as it was" in err
    assert "--resume" in err and "Traceback" not in err
    assert (run / "results.csv").read_bytes() == before


def test_a_link_at_the_run_lock_is_refused_and_its_target_untouched(tmp_path, capsys):
    cfg = write_config(quick(tmp_path), tmp_path / "l.toml")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "lock").symlink_to(outside)
    assert main(["compare", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lock: it is a symbolic link" in err and "Traceback" not in err
    assert outside.read_text() == "keep me"


def _limited(limit: int) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_too_large_exits_2_naming_the_file_and_resume_finishes(tmp_path):
    cfg = write_config(quick(tmp_path), tmp_path / "f.toml")
    proc = subprocess.run([sys.executable, "-m", "ada_core.cli", "compare", str(cfg), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          preexec_fn=lambda: _limited(100_000))  # a checkpoint is larger  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(r"cannot write \S+/r/seed-0/\S+\.pt: the file is larger than allowed",
                     proc.stderr), proc.stderr[-2000:]  # fmt: skip
    assert "Traceback" not in proc.stderr and "enforce fail" not in proc.stderr
    assert main(["compare", str(cfg), "--quiet", "--resume"]) == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"a small disk needs `mount -t tmpfs` (root): {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_exits_2_naming_the_file_and_loses_nothing(small_disk, tmp_path, capsys):
    cfg = write_config(quick(small_disk), tmp_path / "d.toml")
    assert main(["compare", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"cannot write {re.escape(str(small_disk))}/r/\S+: the disk is full", err), err
    assert "Traceback" not in err
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert main(["compare", str(cfg), "--quiet", "--resume"]) == 0
    reference = run_study(parse_config(quick(tmp_path / "ref")), load_plugins(), quiet=True).run_dir
    assert (small_disk / "r" / "results.csv").read_text() == (reference / "results.csv").read_text()


def test_a_chain_of_twenty_random_sigkills_ends_bit_exact(tmp_path):
    """Kill a study with SIGKILL at 20+ random moments (any phase: planning, training, a
    checkpoint write, scoring, aggregation), resume each time: the end equals an
    uninterrupted run bit for bit (results.csv, every checkpoint, every epoch's numbers)."""
    train = {"standard_epochs": 12, "cycles": 2, "ada_epochs": 3, "robustness": True,
             "seeds": [0, 1]}  # fmt: skip
    attributors = ("vanilla", "random", "none")
    kill = write_config(quick(tmp_path / "kill", attributors=attributors, **train), tmp_path / "k.toml")
    ref = write_config(quick(tmp_path / "ref", attributors=attributors, **train), tmp_path / "r.toml")
    out = tmp_path / "chain.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_chain.py"), str(kill),
                           str(ref), "20", "19", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    chain = json.loads(out.read_text())
    assert chain["outcomes"].count("killed") >= 20, chain
    assert chain["outcomes"][-1] == "finished" and chain["reference"] == "finished", chain
    a, b = tmp_path / "kill" / "r", tmp_path / "ref" / "r"
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    checkpoints = sorted(p.relative_to(b) for p in b.rglob("*.pt") if ".superseded" not in p.parts)
    assert len(checkpoints) >= 8
    for rel in checkpoints:
        x, y = torch.load(a / rel, weights_only=True), torch.load(b / rel, weights_only=True)
        tensors = x.get("model", x.get("keep"))
        for k, v in (tensors.items() if isinstance(tensors, dict) else [("keep", tensors)]):
            ref_v = y["model"][k] if "model" in y else y["keep"]
            assert torch.equal(v, ref_v), (rel, k)
    for rel in sorted(p.relative_to(b) for p in b.rglob("metrics.jsonl")):
        got, want = metrics_rows(a / rel.parent), metrics_rows(b / rel.parent)
        assert [(r["epoch"], r["loss"], r["metrics"]) for r in got] == \
            [(r["epoch"], r["loss"], r["metrics"]) for r in want], rel
