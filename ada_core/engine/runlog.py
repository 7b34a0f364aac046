"""Progress display: bars with ETA on a terminal, timestamped log lines otherwise."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["Progress", "Silent"]

log = logging.getLogger(__name__)


class Silent:
    """The progress display of DDP ranks other than 0: shows nothing."""

    def update(self, **postfix: Any) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class Progress:
    """Progress of one phase: a tqdm bar on a terminal, else plain timestamped log lines.

    A bar (with ETA) is drawn only when ``stream`` is a terminal and not ``quiet``. Otherwise
    epochs become INFO records of this module's logger, at most one per ``interval`` seconds
    (and the phase's last epoch), every epoch at DEBUG; the console shows them unless
    ``--quiet``, the run's log file always has them. :meth:`note` is always a log record.

    Args:
        total: epochs of the phase.
        desc: its label (``standard`` or the branch).
        quiet: never draw a bar.
        initial: epochs already done (a resumed phase).
        stream: where a bar is drawn; ``sys.stderr`` when None.
        interval: seconds between INFO epoch lines.
        unit: what is counted (``"epoch"``; the robustness scoring counts ``"batch"``).
    """

    def __init__(self, total: int, desc: str, quiet: bool, initial: int = 0,
                 stream: TextIO | None = None, interval: float = 30.0,
                 unit: str = "epoch") -> None:  # fmt: skip
        self.total, self.desc, self.done, self.interval = total, desc, initial, interval
        self.unit = unit
        stream = sys.stderr if stream is None else stream
        self.bar = None
        self._start = time.monotonic()
        self._first = initial
        self._last_line = -math.inf
        if not quiet and _is_terminal(stream):
            self.bar = tqdm(total=total, initial=initial, desc=desc,
                            unit="ep" if unit == "epoch" else unit,
                            dynamic_ncols=True, leave=True, file=stream)  # fmt: skip

    def update(self, **postfix: Any) -> None:
        """One epoch (unit) finished; ``postfix`` (cycle, loss, dsc) is shown beside the count."""
        self.done += 1
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        level = logging.DEBUG
        if now - self._last_line >= self.interval or self.done >= self.total:
            level, self._last_line = logging.INFO, now
        if log.isEnabledFor(level):
            rate = (now - self._start) / max(1, self.done - self._first)
            eta = f", ETA {_duration(rate * (self.total - self.done))}" if self.done < self.total else ""
            fields = "".join(f" {k} {v}" for k, v in shown.items())
            log.log(level, "%s: %s %d/%d%s (%.1f s/%s%s)", self.desc, self.unit, self.done,
                    self.total, fields, rate, self.unit, eta)  # fmt: skip

    def note(self, text: str) -> None:
        """A line for the log (above the bar when there is one)."""
        if self.bar is not None:
            self.bar.clear()
        log.info("%s: %s", self.desc, text)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
