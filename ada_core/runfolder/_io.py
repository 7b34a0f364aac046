"""The only code that writes and reads run-folder files.

- **Inside the run, never through a link.** Every write names the run folder it belongs to
  (``root``). The target's folder must resolve inside ``root``, and neither the target nor the
  temporary may be a symbolic link: a link planted in a run folder cannot make ADA truncate,
  append to or replace a file elsewhere. Files are opened with ``O_NOFOLLOW``.
- **Atomic.** A write goes to a temporary in the same folder (created with ``O_EXCL``), is
  fsynced, renamed over the target (``os.replace``: a reader sees the old file or the new one)
  and the folder is fsynced so the rename survives a power cut. Ctrl-C waits for the write
  to land and then interrupts (inside ``torch.save`` it would read as a failed job).
- **Out of space is the user's to fix, not a failed job.** A full disk, a quota or a file-size
  limit while writing raises :class:`StorageError` naming the file; the half-written temporary
  is removed and the previous version of the file stays.
- **Safe reading.** Checkpoints load with ``torch.load(weights_only=True)``; a file holding
  anything that could run code is *refused* (:class:`RefusedFileError`), which no fallback
  ever reads past; a damaged one is *unreadable* (:class:`DataError`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from ada_core.errors import DataError

__all__ = [
    "RefusedFileError",
    "StorageError",
    "append_line",
    "atomic_write",
    "clean_json",
    "open_no_follow",
    "read_text",
    "read_torch",
    "remove_stale_temporaries",
    "write_json",
    "write_text",
    "write_torch",
]

_SPACE = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is larger than allowed "
          "(a file-size limit: ulimit -f)", errno.EDQUOT: "the disk quota is exhausted"}  # fmt: skip


class StorageError(DataError):
    """A run-folder file cannot be written (disk full, quota, size limit, a link, outside).

    Not a failure of the job: it stops the study (exit 2) with the file named, and nothing
    finished is lost.
    """


class RefusedFileError(DataError):
    """A file holds objects other than tensors, numbers, strings, lists and dicts."""


def _make_folder(folder: Path, root: Path) -> None:
    """Create ``folder`` below ``root`` one level at a time, never descending through a link
    (``root`` itself may be one: a run folder on another disk)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        rel = Path(folder).relative_to(root)
    except ValueError:
        return  # not below root as spelled: _inside decides on the resolved paths
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            raise StorageError(
                f"refusing to write below {here}: it is a symbolic link (to {os.readlink(here)}); "
                "ADA never writes outside the run folder or through links in it. Remove the "
                "link and run again"
            )
        if not here.is_dir():
            here.mkdir(exist_ok=True)


def _inside(path: Path, root: Path) -> None:
    """Raise StorageError unless ``path``'s folder lies inside ``root`` and ``path`` is no link."""
    _make_folder(path.parent, root)
    real_root = Path(root).resolve()
    folder = path.parent.resolve()
    if folder != real_root and real_root not in folder.parents:
        raise StorageError(
            f"refusing to write {path}: its folder resolves to {folder}, outside the run folder "
            f"{real_root} (a symbolic link inside the run folder?). Remove the link, or give "
            "the run another name"
        )
    if path.is_symlink():
        raise StorageError(
            f"refusing to write {path}: it is a symbolic link (to {os.readlink(path)}); ADA "
            "never writes through links in a run folder. Remove the link and run again"
        )


def _space_error(path: Path, e: BaseException) -> StorageError | None:
    """The StorageError for an out-of-space fault anywhere in ``e``'s chain, else None."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _SPACE:
            return StorageError(f"cannot write {path}: {_SPACE[seen.errno]} ({seen.strerror}). "
                                "Free space (or raise the limit) and run again with --resume; "
                                "nothing finished was lost")  # fmt: skip
        seen = seen.__cause__ or seen.__context__
    return None


def open_no_follow(path: Path, root: Path, flags: int, mode: str) -> IO[Any]:
    """Open ``path`` (inside ``root``) without following a link; ``flags`` add to O_NOFOLLOW.

    Raises:
        StorageError: ``path`` is a link or lies outside ``root``.
    """
    path = Path(path)
    _inside(path, root)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StorageError(f"refusing to open {path}: it is a symbolic link; remove it") from None
        raise
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, then deliver it to the handler it was meant for.

    A KeyboardInterrupt raised inside ``torch.save``'s zip writer comes out as a RuntimeError
    ("unexpected pos ...") that reads as a failed job, not an interrupt; a write is short, so
    it finishes first and the interrupt follows it. Only the main thread can set a handler;
    elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def atomic_write(path: Path, root: Path, write: Callable[[IO[bytes]], None], *,
                 keep_previous: Path | None = None) -> None:  # fmt: skip
    """Write ``path`` atomically through ``write(file)`` (see the module docstring).

    Args:
        path: the target, inside ``root``.
        root: the run folder (or another folder ADA owns, such as the slice cache).
        write: writes the content to the binary file it is given.
        keep_previous: where the current ``path`` is moved before the new one lands.

    Raises:
        StorageError: out of space, or a link / a folder outside ``root`` is in the way.
    """
    path = Path(path)
    _inside(path, root)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.is_file() and not tmp.is_symlink():
        tmp.unlink()  # our own pid's temporary from a process killed before us: garbage
    try:
        with _interrupt_deferred():
            with open_no_follow(tmp, root, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if keep_previous is not None and path.is_file():
                os.replace(path, keep_previous)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except (OSError, RuntimeError) as e:
        space = _space_error(path, e)
        if space is not None:
            raise space from None
        raise
    finally:
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink()  # only ever this call's own temporary


def write_text(path: Path, root: Path, text: str) -> None:
    atomic_write(path, root, lambda f: f.write(text.encode("utf-8")))


def clean_json(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json(path: Path, root: Path, data: Any) -> None:
    """Strict, indented JSON written atomically (NaN -> null)."""
    write_text(path, root, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


def append_line(path: Path, root: Path, line: str) -> None:
    """Append one line (an epoch record) to ``path``, never through a link."""
    try:
        with open_no_follow(path, root, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as e:
        space = _space_error(path, e)
        if space is not None:
            raise space from None
        raise


def write_torch(path: Path, root: Path, state: dict[str, Any], *,
                keep_previous: Path | None = None) -> None:  # fmt: skip
    """``torch.save(state)`` written atomically (see :func:`atomic_write`)."""
    atomic_write(path, root, lambda f: torch.save(state, f), keep_previous=keep_previous)


def read_text(path: Path) -> str:
    """The text of ``path``; DataError naming it when missing or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); it was damaged outside ADA") from None


_CODE = re.compile(r"GLOBAL (\S+)|unrecognized function (\S+)|Can only (?:build|create new "
                   r"object)[^,]*, but got (\S+)|Can only create new object.* got (\S+)")


def read_torch(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A file written by :func:`write_torch`, loaded with ``weights_only=True``.

    Raises:
        RefusedFileError: the file holds an object that could run code when loaded.
        DataError: missing, or unreadable (torn, truncated, not a torch file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; run the phase that writes it first")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        found = _CODE.search(str(e))
        if found is None:  # garbage bytes are not a pickle of anything
            raise DataError(f"checkpoint {path} is unreadable (not a torch checkpoint)") from None
        what = next(g for g in found.groups() if g)
        raise RefusedFileError(
            f"checkpoint {path} was refused: it holds {what}, an object other than tensors, "
            "numbers, strings, lists and dicts, which could run code when loaded. ADA never "
            "writes such files; do not load checkpoints from untrusted sources"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... on damage
        raise DataError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


_TMP = re.compile(r"^\..+\.tmp\d+$")


def remove_stale_temporaries(folder: Path, root: Path) -> list[Path]:
    """Delete temporaries (``.<name>.tmp<pid>``) a killed run left in ``folder`` and below.

    Only regular files matching that pattern, inside ``root``, are touched; links are not.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    folder, real_root = Path(folder), Path(root).resolve()
    if not folder.is_dir():
        return removed
    for p in folder.rglob(".*.tmp*"):
        if p.is_file() and not p.is_symlink() and _TMP.match(p.name) and \
                real_root in p.resolve().parents:
            p.unlink()
            removed.append(p)
    return removed
