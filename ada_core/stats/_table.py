"""The tidy results table: reading ``results.csv``, validating it, subject means.

One row per (seed, fold, branch, set, subject, slice); a column per metric, empty where the
metric is undefined on that slice (NaN).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ada_core.errors import DataError, InputError, suggest
from ada_core.quantities import KEY_COLUMNS, METRICS, ROW_KEY

__all__ = ["HIGHER_IS_BETTER", "KEY", "KEY_COLUMNS", "PersonMeans", "SubjectMeans", "Table",
           "person_means", "read_table", "subject_means"]

#: The columns that identify a row (``person`` and ``site`` are attributes of the subject).
KEY = ROW_KEY
_INT = ("seed", "slice")
#: Orientation of the known metrics.
HIGHER_IS_BETTER = {name: m.higher_is_better for name, m in METRICS.items()}


def _codes(*cols: np.ndarray) -> np.ndarray:
    """One integer code per row for the combination of ``cols`` (equal rows, equal codes)."""
    inv = [np.unique(c, return_inverse=True)[1].ravel() for c in cols]
    return np.unique(np.stack(inv, axis=1), axis=0, return_inverse=True)[1].ravel()


class Table:
    """A light column store: column name -> numpy array, validated on construction.

    Args:
        columns: every name of :data:`KEY_COLUMNS` and at least one metric column.
        source: the file it came from, for messages.
        lines: each row's line number in ``source`` (defaults to 1-based row numbers).

    Raises:
        DataError: a missing column, unequal lengths, bad values, or two rows with the same
            (seed, fold, branch, set, subject, slice), naming the file, row and column.
    """

    def __init__(self, columns: Mapping[str, object], *, source: str = "<table>",
                 lines: object = None) -> None:
        self.source = source
        missing = [c for c in KEY_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{source}: missing column(s) {missing}; a results table has "
                            f"{list(KEY_COLUMNS)} and one column per metric")
        metrics = tuple(c for c in columns if c not in KEY_COLUMNS)
        if not metrics:
            raise DataError(f"{source}: no metric columns (expected e.g. "
                            f"{sorted(HIGHER_IS_BETTER)})")
        n = len(columns["seed"])  # type: ignore[arg-type]
        self.lines = np.arange(2, n + 2) if lines is None else np.asarray(lines)
        cols: dict[str, np.ndarray] = {}
        for name, raw in columns.items():
            arr = np.asarray(raw)
            if arr.shape != (n,):
                raise DataError(f"{source}: column {name!r} has shape {arr.shape}, expected "
                                f"({n},) like 'seed'")
            if name in _INT:
                if not np.issubdtype(arr.dtype, np.integer):
                    raise DataError(f"{source}: column {name!r} must hold integers, got "
                                    f"{arr.dtype}")
                arr = arr.astype(np.int64)
            elif name in KEY_COLUMNS:
                arr = arr.astype(str)
            else:
                arr = arr.astype(np.float64)
                bad = np.flatnonzero(np.isinf(arr))
                if bad.size:
                    raise DataError(f"{source}, line {self.lines[bad[0]]}, column {name!r}: "
                                    f"infinite value; undefined metrics are left empty (NaN)")
            cols[name] = arr
        self.columns = cols
        self.metrics = metrics
        self._values: dict[str, list] = {}
        if n == 0:
            raise DataError(f"{source}: the table has no rows")
        self._check_duplicates()

    def _check_duplicates(self) -> None:
        code = _codes(*(self.columns[c] for c in KEY))
        order = np.argsort(code, kind="stable")
        same = np.flatnonzero(code[order][1:] == code[order][:-1])
        if same.size:
            i, j = order[same[0]], order[same[0] + 1]
            key = ", ".join(f"{c}={self.columns[c][i].item()!r}" for c in KEY)
            raise DataError(f"{self.source}: lines {self.lines[i]} and {self.lines[j]} have the "
                            f"same key ({key}); {same.size} duplicate row(s) in all. Each "
                            f"(seed, fold, branch, set, subject, slice) must appear once")
        subj = _codes(self.columns["fold"], self.columns["subject"])
        for attr in ("site", "person"):  # attributes of a subject: one value per subject
            both = _codes(self.columns["fold"], self.columns["subject"], self.columns[attr])
            if np.unique(both).size == np.unique(subj).size:
                continue
            first: dict[int, str] = {}
            for i, (s, t) in enumerate(zip(subj, self.columns[attr].tolist(), strict=True)):
                if first.setdefault(s, t) != t:
                    raise DataError(f"{self.source}, line {self.lines[i]}: subject "
                                    f"{self.columns['subject'][i].item()!r} has {attr} {t!r} "
                                    f"here and {first[s]!r} on an earlier line")

    def __len__(self) -> int:
        return len(self.columns["seed"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise InputError(f"{self.source}: no column {name!r}. " + suggest(name, self.columns))
        return self.columns[name]

    def values(self, column: str) -> list:
        """The distinct values of ``column``, sorted."""
        if column not in self._values:
            self._values[column] = sorted(np.unique(self[column]).tolist())
        return list(self._values[column])

    def subset(self, rows: np.ndarray) -> Table:
        """The rows selected by a boolean mask or index array."""
        return Table({k: v[rows] for k, v in self.columns.items()}, source=self.source,
                     lines=self.lines[rows])


def _parse(text: str, kind: type, where: str) -> float | int:
    try:
        if kind is int:
            return int(text)
        return math.nan if text.strip() == "" else float(text)
    except ValueError as e:
        want = "an integer" if kind is int else "a number or empty (undefined)"
        raise DataError(f"{where}: {text!r} is not {want}") from e


def read_table(path: str | Path) -> Table:
    """Read a ``results.csv`` with the csv module.

    Raises:
        DataError: the file is missing or malformed, naming the file, line and column.
    """
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read results table {path}: {e}") from e
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file, expected a header row {list(KEY_COLUMNS)}")
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise DataError(f"{path}: column(s) {dup} appear more than once in the header")
        kinds = [int if h in _INT else str if h in KEY_COLUMNS else float for h in header]
        data: list[list] = [[] for _ in header]
        lines = []
        for row in reader:
            if not row:
                continue
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")
            for col, kind, text, name in zip(data, kinds, row, header, strict=True):
                col.append(text if kind is str else _parse(text, kind, f"{where}, "
                                                                        f"column {name!r}"))
            lines.append(reader.line_num)
    if not lines:
        raise DataError(f"{path}: the table has a header but no rows")
    cols = {h: np.asarray(c, dtype=object if k is str else k) for h, c, k in
            zip(header, data, kinds, strict=True)}
    return Table(cols, source=str(path), lines=lines)


@dataclass(frozen=True)
class PersonMeans:
    """Slices aggregated to one mean per (seed, fold, branch, person) of one set and metric.

    A person's mean is the mean of its subjects' (sessions', raters') slice means, so each
    scan counts once whatever its number of slices. Parallel ``(G,)`` arrays; ``mean`` is NaN
    where every slice of the person is undefined.
    """

    set: str
    metric: str
    seed: np.ndarray
    fold: np.ndarray
    branch: np.ndarray
    person: np.ndarray
    site: np.ndarray
    mean: np.ndarray
    n_subjects: np.ndarray
    n_slices: np.ndarray
    n_undefined: np.ndarray


def _nan_mean(code: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group of ``code``: the mean of the defined (non-NaN) values, NaN where none is, and
    the number of defined values."""
    ok = ~np.isnan(values)
    n_ok = np.bincount(code, weights=ok)
    total = np.bincount(code, weights=np.where(ok, values, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_ok > 0, total / n_ok, np.nan), n_ok


def _check_name(kind: str, name: str, valid, source: str) -> None:
    if name not in valid:
        raise InputError(f"{source}: unknown {kind} {name!r}. " + suggest(name, valid))


def person_means(table: Table, set: str, metrics) -> dict[str, PersonMeans]:
    """Per metric: the mean over each person's subjects of the subject's slice mean, NaN-aware.

    Raises:
        InputError: ``set`` or a metric is not in the table (the valid names are listed).
    """
    _check_name("set", set, table.values("set"), table.source)
    for metric in metrics:
        _check_name("metric", metric, table.metrics, table.source)
    rows = table["set"] == set
    cols = {c: table[c][rows] for c in ("seed", "fold", "branch", "person", "subject", "site")}
    subj = _codes(cols["seed"], cols["fold"], cols["branch"], cols["subject"])
    first_s = np.unique(subj, return_index=True)[1]
    pers_of_subj = _codes(*(cols[c][first_s] for c in ("seed", "fold", "branch", "person")))
    first_p = first_s[np.unique(pers_of_subj, return_index=True)[1]]
    keys = {k: cols[k][first_p] for k in ("seed", "fold", "branch", "person", "site")}
    n_slices_s = np.bincount(subj)
    n_slices = np.bincount(pers_of_subj, weights=n_slices_s).astype(np.int64)
    n_subjects = np.bincount(pers_of_subj).astype(np.int64)
    out = {}
    for metric in metrics:
        s_mean, n_ok = _nan_mean(subj, table[metric][rows])  # each scan's slice mean
        mean, _ = _nan_mean(pers_of_subj, s_mean)  # each person's mean over its scans
        undefined = np.bincount(pers_of_subj, weights=n_slices_s - n_ok).astype(np.int64)
        out[metric] = PersonMeans(set=set, metric=metric, **keys, mean=mean,
                                  n_subjects=n_subjects, n_slices=n_slices,
                                  n_undefined=undefined)  # fmt: skip
    return out


@dataclass(frozen=True)
class SubjectMeans:
    """Slices aggregated to one mean per (seed, fold, branch, subject) of one set and metric.

    All fields are parallel ``(G,)`` arrays; ``mean`` is NaN where every slice of the group
    is undefined.
    """

    set: str
    metric: str
    seed: np.ndarray
    fold: np.ndarray
    branch: np.ndarray
    subject: np.ndarray
    site: np.ndarray
    mean: np.ndarray
    n_slices: np.ndarray
    n_undefined: np.ndarray


def subject_means(table: Table, set: str, metric: str) -> SubjectMeans:
    """Mean of ``metric`` over each subject's slices in ``set``, NaN-aware.

    Raises:
        InputError: ``set`` or ``metric`` is not in the table (the valid names are listed).
    """
    return subject_means_many(table, set, (metric,))[metric]


def subject_means_many(table: Table, set: str, metrics) -> dict[str, SubjectMeans]:
    """:func:`subject_means` of several metrics, grouping the rows once."""
    _check_name("set", set, table.values("set"), table.source)
    for metric in metrics:
        _check_name("metric", metric, table.metrics, table.source)
    rows = table["set"] == set
    cols = {c: table[c][rows] for c in ("seed", "fold", "branch", "subject", "site")}
    code = _codes(cols["seed"], cols["fold"], cols["branch"], cols["subject"])
    first = np.unique(code, return_index=True)[1]
    keys = {k: v[first] for k, v in cols.items()}
    n = np.bincount(code)
    out = {}
    for metric in metrics:
        mean, n_ok = _nan_mean(code, table[metric][rows])
        out[metric] = SubjectMeans(set=set, metric=metric, **keys, mean=mean,
                                   n_slices=n.astype(np.int64),
                                   n_undefined=(n - n_ok).astype(np.int64))
    return out
