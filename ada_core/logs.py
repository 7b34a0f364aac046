"""Logging: the console handler of the ``ada`` command and the log file of a run folder.

Results go to stdout; progress, notes and warnings go through :mod:`logging` to stderr and to
``<run>/log/ada.log``. The library itself only creates loggers (``logging.getLogger(__name__)``);
the command line calls :func:`configure`, and :func:`run_log` adds a run's file for as long as
the run lasts (the Python API does the same), so a notebook's own logging set-up is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LineLogger", "configure", "console_level", "reset", "run_log"]

#: Where a run's log goes, relative to the run folder.
#: Loggers whose records are ADA's own (raised to DEBUG by ``-v``; ``-vv`` raises every one).
ADA_LOGGERS = ("ada_core", "ada_captum", "ada_scgm", "ada_unet", "ada")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_CONSOLE_FORMAT = "%(asctime)s %(message)s"
_MARK = "_ada_console"
_saved: dict[str, int] = {}  # levels configure() changed, for reset()


def console_level(verbose: int, quiet: bool) -> int:
    """Level of the console: WARNING with ``quiet``, INFO by default, DEBUG with ``-v``."""
    if quiet:
        return logging.WARNING
    return logging.DEBUG if verbose > 0 else logging.INFO


class _ConsoleFormatter(logging.Formatter):
    """``12:00:01 message``; other levels than INFO are named (``12:00:01 WARNING: ...``)."""

    def __init__(self) -> None:
        super().__init__(_CONSOLE_FORMAT, "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        text = super().formatMessage(record)
        if record.levelno != logging.INFO:
            stamp, _, rest = text.partition(" ")
            text = f"{stamp} {record.levelname}: {rest}"
        return text


class _Console(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest and redirections swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def configure(verbose: int = 0, quiet: bool = False) -> None:
    """Set up logging for the command line: timestamped lines on stderr.

    ``quiet`` shows warnings and errors only; ``verbose`` 1 shows ADA's debug records, 2 every
    library's. Warnings (:mod:`warnings`) are logged too, so they reach the run's log file.
    Calling it again replaces the console handler it added before.
    """
    reset()
    root = logging.getLogger()
    _saved["root"] = root.level
    _saved.update({name: logging.getLogger(name).level for name in ADA_LOGGERS})
    handler = _Console()
    setattr(handler, _MARK, True)
    handler.setLevel(console_level(verbose, quiet))
    handler.setFormatter(_ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    for name in ADA_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 1 else logging.NOTSET)
    logging.captureWarnings(True)


def reset() -> None:
    """Undo :func:`configure`: remove its console handler, restore the levels it changed."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(h)
    if "root" in _saved:
        root.setLevel(_saved.pop("root"))
        for name in ADA_LOGGERS:
            logging.getLogger(name).setLevel(_saved.pop(name, logging.NOTSET))
        logging.captureWarnings(False)


@contextlib.contextmanager
def run_log(run_dir: Path, verbose: int = 0) -> Iterator[Path]:
    """Append every log record of the block to ``run_dir/log/ada.log`` (INFO, DEBUG with -v).

    ADA's loggers are raised to at least INFO for the block (and restored after), so the file
    gets the progress lines whatever the caller's logging set-up.

    Yields:
        The log file's path.
    """
    from ada_core.runfolder import RunLayout, open_no_follow

    layout = RunLayout(Path(run_dir))
    path = layout.log_file
    # never through a link planted at RUN/log/ada.log
    stream = open_no_follow(path, layout.root, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a")
    handler = logging.StreamHandler(stream)
    level = logging.DEBUG if verbose else logging.INFO
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    saved = {}
    for name in ADA_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > level:
            saved[name] = logger.level
            logger.setLevel(level)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        stream.close()
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)


class LineLogger(io.TextIOBase):
    """A text stream that logs each complete line it is given (for ``print`` in the engine).

    Used with :func:`contextlib.redirect_stdout` around the engine, so that its status lines
    become log records (stderr and the log file) and stdout holds only results.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        self.logger, self.level, self._buf = logger, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                level = logging.WARNING if line.startswith("FAILED") else self.level
                self.logger.log(level, line)
        return len(text)

    def flush(self) -> None:
        if self._buf.strip():
            self.logger.log(self.level, self._buf)
        self._buf = ""
