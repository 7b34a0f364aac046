"""The run-folder lock: one writer per run folder, released by the OS if the process dies.

``RunLock`` takes an ``fcntl.flock`` on ``<run>/lock``. A plain ``ada compare`` takes it
exclusively; the processes of one sharded or ``torchrun`` study take it shared (each also
locks the job folder it trains, see :func:`job_lock`), so they can work side by side while a
second, unrelated ``ada compare`` on the same folder is refused. A refused process gets a
:class:`RunLockedError` naming the holder (PID, host, command, since when). Lock files are
opened without following links (:func:`~ada_core.runfolder._io.open_no_follow`): a link
planted at ``<run>/lock`` or a job's ``.lock`` is refused, never truncated through.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ada_core.errors import AdaError
from ada_core.runfolder._io import open_no_follow
from ada_core.runfolder.layout import JobPaths, RunLayout

__all__ = ["RunLock", "RunLockedError", "job_lock"]


class RunLockedError(AdaError):
    """Another process holds the lock of a run folder or job folder."""


def _holder() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv[:4]),
    }


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    if not info:
        return "another process"
    return (
        f"PID {info.get('pid', '?')} on host {info.get('host', '?')} "
        f"(since {info.get('since', '?')}: {info.get('command', '?')})"
    )


def _open_lock(path: Path, root: Path) -> IO[str]:
    return open_no_follow(path, root, os.O_RDWR | os.O_CREAT, "a+")


def _holders(f: IO[str], path: Path) -> str:
    """Who holds ``path``: a sharded study's processes (a shared lock) or one exclusive holder."""
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:  # someone holds it exclusively: a plain `ada compare`
        return f"an `ada compare` ({_describe(path)})"
    fcntl.flock(f, fcntl.LOCK_UN)
    return "the processes of a sharded or torchrun study (a shared lock)"


class RunLock:
    """Context manager holding the lock of ``run_dir``.

    Args:
        run_dir: the run folder (created if needed).
        shared: take the lock shared (processes of one sharded study) instead of exclusive.
    """

    def __init__(self, run_dir: Path | RunLayout, *, shared: bool = False) -> None:
        self.layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(Path(run_dir))
        self.path = self.layout.lock
        self.shared = shared
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        f = _open_lock(self.path, self.layout.root)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holders(f, self.path)
            f.close()
            raise RunLockedError(
                f"run folder {self.layout.root} is in use by {who}; wait for it to finish, or "
                "give this run another name (name = ... or --set name=...)"
            ) from None
        if not self.shared:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(_holder()))
            f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@contextlib.contextmanager
def job_lock(job: JobPaths) -> Iterator[None]:
    """Exclusive lock of one job folder (so two shards never train the same job)."""
    job.folder.mkdir(parents=True, exist_ok=True)
    path = job.lock
    with _open_lock(path, job.root) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"job folder {job.folder} is being trained by {_describe(path)}"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps(_holder()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
