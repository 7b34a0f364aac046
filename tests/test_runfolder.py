"""The run folder's writers and readers (ada_core.runfolder), against the damage they must
survive: torn and crafted files, links planted in the folder, a full disk, a file-size limit.

Files are checked with independent readers (``json``, ``torch.load(weights_only=True)``,
``os.lstat``), never with the module's own readers alone.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studykit import ROOT, load_pt

from ada_core.errors import DataError
from ada_core.runfolder import (
    CheckpointWarning,
    DoneRecord,
    JobPaths,
    RefusedFileError,
    RunLayout,
    RunLock,
    StorageError,
    TrainingState,
    job_lock,
    read_record,
    read_training_state,
    read_weights,
    write_json,
    write_training_state,
)
from ada_core.runfolder._io import atomic_write, read_torch, write_torch


def _job(tmp_path: Path) -> JobPaths:
    job = RunLayout(tmp_path / "run").replicate("", 0).standard
    job.folder.mkdir(parents=True)
    return job


def _state(epoch: int) -> TrainingState:
    return TrainingState({"w": torch.full((3,), float(epoch))}, {}, {}, epoch, None, 0.0, {})


# --------------------------------------------------------------------------- atomic, safe


def test_writes_are_atomic_strict_json_and_leave_no_temporary(tmp_path):
    root = tmp_path / "run"
    write_torch(root / "a" / "ck.pt", root, {"x": torch.arange(3)})
    assert torch.equal(load_pt(root / "a" / "ck.pt")["x"], torch.arange(3))
    write_json(root / "n.json", root, {"v": float("nan"), "w": [1.0, float("inf")]})
    assert json.loads((root / "n.json").read_text()) == {"v": None, "w": [1.0, None]}
    assert sorted(p.name for p in root.rglob("*")) == ["a", "ck.pt", "n.json"]


class _CtrlCDuringWrite:
    """A file that receives Ctrl-C on its third write, from inside torch.save's zip writer."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def write(self, data):
        self.calls += 1
        if self.calls == 3:
            signal.raise_signal(signal.SIGINT)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_ctrl_c_during_a_checkpoint_write_lands_the_file_then_interrupts(tmp_path):
    # CI saw this as a failed job: KeyboardInterrupt inside torch.save's C++ writer comes out
    # as RuntimeError "unexpected pos ...". The write must finish, then the interrupt follow.
    root, state = tmp_path / "run", {"w": torch.arange(10_000.0), "b": torch.ones(7)}
    with pytest.raises(KeyboardInterrupt):
        atomic_write(root / "ck.pt", root, lambda f: torch.save(state, _CtrlCDuringWrite(f)))
    back = torch.load(root / "ck.pt", weights_only=True)
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["b"], state["b"])
    assert sorted(p.name for p in root.iterdir()) == ["ck.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_missing_and_damaged_checkpoints_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.pt does not exist"):
        read_torch(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"bad\.pt is unreadable"):
        read_torch(tmp_path / "bad.pt")


class _WritesAFile:
    """A pickle payload that, if ever unpickled, creates a file (arbitrary code execution)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


class _CallsOs:
    """A payload through a module torch 2.14 blocks outright ('Trying to load unsupported
    GLOBAL ... whose module os is blocked'), a different message from the one above."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("payload", ["path", "os"])
def test_a_file_that_would_run_code_is_refused_and_never_fallen_back_past(tmp_path, payload):
    job = _job(tmp_path)
    target = tmp_path / "written-by-the-pickle"
    write_training_state(job, _state(1))
    write_training_state(job, _state(2))  # last.prev.pt: a readable previous version
    bad = _WritesAFile(str(target)) if payload == "path" else _CallsOs()
    torch.save({"model": {}, "payload": bad}, job.last)
    with pytest.raises(RefusedFileError, match=r"last\.pt was refused: it holds .*could run code"):
        read_training_state(job.last, job=job)  # never falls back to last.prev.pt
    assert not target.exists()
    assert job.last.is_file() and not job.damaged(job.last).exists()  # left as it is
    with pytest.raises(pickle.UnpicklingError):  # the reference: torch refuses it too
        torch.load(job.last, weights_only=True)


def test_a_torn_last_checkpoint_falls_back_and_is_kept_aside_not_demoted(tmp_path):
    job = _job(tmp_path)
    write_training_state(job, _state(1))
    write_training_state(job, _state(2))
    job.last.write_bytes(job.last.read_bytes()[:40])  # a torn write of the latest
    with pytest.warns(CheckpointWarning, match=r"using the previous checkpoint last\.prev\.pt"):
        assert read_training_state(job.last, job=job).epoch == 1
    assert job.damaged(job.last).stat().st_size == 40  # kept, never deleted
    write_training_state(job, _state(2))  # the repaired epoch
    assert load_pt(job.last)["epoch"] == 2
    assert load_pt(job.previous(job.last))["epoch"] == 1  # the good copy, not the torn file
    with pytest.raises(DataError, match="unreadable"):
        read_training_state(job.damaged(job.last))  # without a job there is no fallback


def test_done_json_names_only_the_jobs_own_checkpoints(tmp_path):
    job = _job(tmp_path)
    good = {"key": "k", "epochs": 1, "best": {"epoch": 1, "cycle": 0, "metrics": {}},
            "selected": "best.pt", "selected_epoch": 1, "seconds": 0.0}  # fmt: skip
    for selected in ("../../../outside/x.pt", "/etc/passwd", "other.pt"):
        job.done.write_text(json.dumps({**good, "selected": selected}))
        with pytest.raises(DataError, match=r"done\.json is not a valid DoneRecord: field "
                           r"'selected'"):  # fmt: skip
            read_record(job.done, DoneRecord)
        with pytest.raises(DataError, match="a job selects one of its own checkpoints"):
            job.selected(selected)
    job.done.write_text(json.dumps({**good, "epochs": "many"}))
    with pytest.raises(DataError, match=r"field 'epochs'"):
        read_record(job.done, DoneRecord)


# --------------------------------------------------------------------------- links


def test_no_write_follows_a_link_planted_in_the_run_folder(tmp_path):
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    layout.summary.symlink_to(outside)
    with pytest.raises(StorageError, match=r"summary\.json: it is a symbolic link"):
        write_json(layout.summary, layout.root, {"x": 1})
    (tmp_path / "elsewhere").mkdir()
    (layout.root / "seed-0").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    job = layout.replicate("", 0).standard
    with pytest.raises(StorageError, match="seed-0: it is a symbolic link"):
        write_training_state(job, _state(1))
    assert outside.read_text() == "keep me" and not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("which", ["run lock", "job lock", "log"])
def test_locks_and_the_log_never_open_a_link(tmp_path, which):
    from ada_core.logs import run_log

    layout = RunLayout(tmp_path / "run")
    job = layout.replicate("", 0).standard
    job.folder.mkdir(parents=True)
    layout.log_dir.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    link = {"run lock": layout.lock, "job lock": job.lock, "log": layout.log_file}[which]
    link.symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link"):
        if which == "run lock":
            RunLock(layout).__enter__()
        elif which == "job lock":
            with job_lock(job):
                pass
        else:
            with run_log(layout.root):
                pass
    assert outside.read_text() == "keep me"


def test_the_lock_message_says_who_holds_it(tmp_path):
    layout = RunLayout(tmp_path / "run")
    with RunLock(layout, shared=True):
        with pytest.raises(Exception, match=r"in use by the processes of a sharded or torchrun "
                           r"study \(a shared lock\)"):  # fmt: skip
            RunLock(layout).__enter__()
    code = ("import sys, time; from pathlib import Path; from ada_core.runfolder import RunLock\n"
            f"with RunLock(Path({str(layout.root)!r})):\n    print('held', flush=True); time.sleep(60)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=rf"in use by an `ada compare` \(PID {holder.pid} on"):
            RunLock(layout, shared=True).__enter__()
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- out of space


def _limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_is_a_storage_error_naming_the_file_and_keeping_the_old(tmp_path):
    job = _job(tmp_path)
    write_training_state(job, _state(1))
    before = job.last.read_bytes()
    code = ("import torch; from pathlib import Path; from ada_core.runfolder import "
            "JobPaths, TrainingState, write_training_state\n"
            f"job = JobPaths(Path({str(job.root)!r}), Path({str(job.rel)!r}))\n"
            "write_training_state(job, TrainingState({'w': torch.zeros(100000)}, {}, {}, 2, None, "
            "0.0, {}))\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=lambda: _limited(len(before) + 1000), check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "StorageError: cannot write" in proc.stderr and "last.pt: the file is larger than " \
        "allowed" in proc.stderr, proc.stderr[-2000:]
    assert job.last.read_bytes() == before  # the previous version stands, no temporary left
    assert sorted(p.name for p in job.folder.iterdir()) == ["last.pt"]
    assert read_weights(job.last).model["w"][0] == 1


# --------------------------------------------------------------------------- one owner


def _constants(path: Path) -> set[str]:
    import ast

    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}  # fmt: skip


def test_every_run_folder_file_name_is_spelled_in_the_layout_module_only():
    layout = ROOT / "ada_core" / "runfolder" / "layout.py"
    names = {"key.json", "start.json", "metrics.jsonl", "last.pt", "last.prev.pt", "best.pt",
             "average.pt", "keep.pt", "cycle1.pt", "samples.pt", "done.json", "failed.json",
             "rows.csv", "mean_image.npy", "config.toml", "config.json", "study.json",
             "results.csv", "summary.json", "summary.txt", "report.html", ".superseded"}  # fmt: skip
    assert names <= _constants(layout)
    for path in sorted((ROOT / "ada_core").rglob("*.py")):
        if path != layout:
            spelled = names & _constants(path)
            assert not spelled, f"{path.relative_to(ROOT)} spells {sorted(spelled)}: ask the layout"
            assert "parent.parent" not in path.read_text(), path


def test_the_report_reads_the_run_folder_without_the_engine():
    import ast

    for path in sorted((ROOT / "ada_core" / "report").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("ada_core.engine"), (path.name, node.module)
