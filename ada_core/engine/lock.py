"""The run-folder lock: one writer per run folder, released by the OS if the process dies.

``RunLock`` takes an ``fcntl.flock`` on ``<run>/lock``. A plain ``ada compare`` takes it
exclusively; the processes of one sharded or ``torchrun`` study take it shared (each also
locks the job folder it trains, see :func:`job_lock`), so they can work side by side while a
second, unrelated ``ada compare`` on the same folder is refused. A refused process gets a
:class:`RunLockedError` naming the holder (PID, host, command, since when).
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


class RunLock:
    """Context manager holding the lock of ``run_dir``.

    Args:
        run_dir: the run folder (created if needed).
        shared: take the lock shared (processes of one sharded study) instead of exclusive.
    """

    def __init__(self, run_dir: Path, *, shared: bool = False) -> None:
        self.path = Path(run_dir) / "lock"
        self.shared = shared
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until __exit__
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            kind = "shared by the processes of a sharded study" if not self.shared else "held"
            raise RunLockedError(
                f"run folder {self.path.parent} is in use ({kind}) by {_describe(self.path)}; "
                "wait for it to finish, or give this run another name (name = ... or "
                "--set name=...)"
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
def job_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock of one job folder (so two shards never train the same job)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"job folder {folder} is being trained by {_describe(path)}"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps(_holder()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
