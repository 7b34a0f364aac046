"""The tidy rows: each job's ``eval/<key>/rows.csv`` and the study's ``results.csv``.

One row per (seed, fold, branch, set, subject, slice) with the person and site of the subject
and one column per metric (:data:`~ada_core.quantities.METRICS`), empty where undefined.
A job's rows are complete when its ``eval/<key>/summary.json`` records their count and
sha256: that file is written last, so a scoring killed half-way is simply not scored yet, and
a rows file damaged later is caught before it reaches ``results.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ada_core.errors import DataError
from ada_core.quantities import KEY_COLUMNS, METRICS
from ada_core.runfolder import _io
from ada_core.runfolder.layout import EvalPaths, RunLayout

__all__ = ["COLUMNS", "RowBlock", "RowsDigest", "check_rows", "concat_results", "write_rows"]

#: The columns of rows.csv and results.csv, in order.
COLUMNS = (*KEY_COLUMNS, *METRICS)


@dataclass(frozen=True)
class RowBlock:
    """The rows of one set: parallel lists, ``values[metric]`` one float (NaN: undefined) per row."""

    set: str
    person: Sequence[str]
    subject: Sequence[str]
    site: Sequence[str]
    slice: Sequence[int]
    values: dict[str, Sequence[float | None]]


@dataclass(frozen=True)
class RowsDigest:
    rows: int
    sha256: str


def _fmt(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def write_rows(ev: EvalPaths, blocks: Sequence[RowBlock], *, seed: int, fold: str,
               branch: str) -> RowsDigest:  # fmt: skip
    """Write one job's rows; returns what its eval summary must record."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for b in blocks:
        cols = [b.values[m] for m in METRICS]
        for i, key in enumerate(zip(b.person, b.subject, b.site, b.slice, strict=True)):
            writer.writerow([seed, fold, branch, b.set, *key, *(_fmt(c[i]) for c in cols)])
            n += 1
    text = buf.getvalue()
    _io.write_text(ev.rows, ev.root, text)
    return RowsDigest(n, hashlib.sha256(text.encode("utf-8")).hexdigest())


def check_rows(ev: EvalPaths, digest: RowsDigest, *, seed: int, fold: str, branch: str) -> str:
    """The text of a job's rows.csv after checking it whole; raises naming the file.

    Raises:
        DataError: the file is missing, differs from what was written (truncated, edited:
            its sha256), has another header, or holds rows of another job.
    """
    try:
        raw = ev.rows.read_bytes()
    except OSError as e:
        raise DataError(f"{ev.rows}: cannot be read ({e.strerror})") from None
    if hashlib.sha256(raw).hexdigest() != digest.sha256:
        lines = raw.count(b"\n") - 1
        raise DataError(f"{ev.rows} is damaged: it is not the file the scoring wrote "
                        f"({lines} rows on disk, {digest.rows} written; checksum differs)")  # fmt: skip
    text = raw.decode("utf-8")
    header, _, body = text.partition("\n")
    if header != ",".join(COLUMNS):
        raise DataError(f"{ev.rows}: header {header!r}; expected {','.join(COLUMNS)}")
    want = (str(seed), fold, branch)
    for i, row in enumerate(csv.reader(io.StringIO(body)), start=2):
        if tuple(row[:3]) != want:
            raise DataError(f"{ev.rows}, line {i}: a row of seed/fold/branch {row[:3]}, in the "
                            f"folder of {list(want)}")  # fmt: skip
    return body


def concat_results(layout: RunLayout, bodies: Sequence[str]) -> Path:
    """``results.csv`` from checked row bodies (:func:`check_rows`), written atomically."""
    text = ",".join(COLUMNS) + "\n" + "".join(bodies)
    _io.write_text(layout.results, layout.root, text)
    return layout.results
