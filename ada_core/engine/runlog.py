"""metrics.jsonl (one line per epoch) and progress display (bars with ETA, or plain lines)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ada_core.engine.checkpoint import _clean

__all__ = ["MetricsLog", "Progress"]


class MetricsLog:
    """Appends one JSON object per epoch to ``path``.

    Args:
        path: the ``metrics.jsonl`` file.
        keep: number of existing lines to keep (a resumed phase drops epochs after its last
            checkpoint); None keeps nothing (a fresh phase).
    """

    def __init__(self, path: Path, keep: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        if keep and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()[:keep]
        self.path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(_clean(record), allow_nan=False) + "\n")

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        path = Path(path)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class Progress:
    """A tqdm bar over epochs (with ETA), or one plain line per cycle in quiet mode."""

    def __init__(self, total: int, desc: str, quiet: bool, initial: int = 0) -> None:
        self.quiet = quiet
        self.desc = desc
        self.bar = None
        if not quiet:
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit="ep",
                dynamic_ncols=True,
                leave=True,
                file=sys.stderr,
            )

    def update(self, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                refresh=False,
            )
            self.bar.update(1)

    def note(self, text: str) -> None:
        """A line for the log (quiet mode) or above the bar."""
        if self.bar is not None:
            self.bar.write(f"{self.desc}: {text}", file=sys.stderr)
        else:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
