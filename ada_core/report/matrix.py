"""The comparison matrix: per scored set, methods x controls (every compared metric), and on
the primary endpoint methods x methods; each cell a paired difference with its interval.

It replaces a long forest plot: a reader finds a method's row and a control's column. A cell
is coloured by the sign of the difference (oriented so that positive = the row is better;
blue better, orange worse, pale where the interval includes 0) and starred where it survives
the Holm correction of its family. A missing cell says why in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ada_core.quantities import METRICS
from ada_core.report._format import fmt, ordered_sets, set_title
from ada_core.runfolder import RunSummary
from ada_core.stats import Comparison

__all__ = ["MatrixCell", "MatrixPanel", "comparison_matrix", "short_reason"]


@dataclass(frozen=True)
class MatrixCell:
    """One cell: the difference of its row against its column.

    Attributes:
        diff: the signed difference ('+2.4'), or '' when there is none.
        interval: '[−0.5, 5.3]', or ''.
        sign: 'pos' (row better), 'neg', 'zero', or 'na' (no difference: see ``why``).
        excludes_zero: the interval excludes 0 (before any correction).
        holm: survives the Holm correction of its family.
        why: shown in place: why the cell has no number ('n/a: ...') or no interval.
        title: the tooltip: p, Holm p and family, n.
    """

    diff: str
    interval: str
    sign: str
    excludes_zero: bool = False
    holm: bool = False
    why: str = ""
    title: str = ""

    @property
    def css(self) -> str:
        strength = "strong" if self.excludes_zero else "pale"
        return f"mx-{self.sign}" + (f" mx-{strength}" if self.sign in ("pos", "neg") else "") + \
            (" mx-holm" if self.holm else "")  # fmt: skip


@dataclass(frozen=True)
class MatrixPanel:
    """One panel: rows x (metric groups of columns).

    Attributes:
        key: HTML id, e.g. ``"matrix-test"`` or ``"matrix-test-pairs"``.
        title: heading.
        groups: (metric header, number of columns) over the columns.
        columns: column labels (controls, or methods).
        rows: (row label, cells).
        caption: what the panel shows: orientation, n, family, untested cells.
        primary: the panel of the primary set (shown first, next to the verdict).
    """

    key: str
    title: str
    groups: tuple[tuple[str, int], ...]
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[MatrixCell, ...]], ...]
    caption: str
    primary: bool = False


def short_reason(c: Comparison) -> str:
    """Why ``c`` has no p value (or no difference), in a few words; '' when tested."""
    if c.diff is None:
        return "undefined"
    if c.p is not None:
        return ""
    if c.n_seeds == 1 and c.n_persons == 1:
        return "1 seed \u00d7 1 person"
    if c.ci is None:
        return "no variation"
    if c.n_seeds == 1:
        return "1 seed"
    if c.n_persons == 1:
        return "1 person"
    return "not tested"


def _cell(c: Comparison | None, flip: bool, missing: str) -> MatrixCell:
    if c is None:
        return MatrixCell("", "", "na", why=f"n/a: {missing}")
    if c.diff is None:
        return MatrixCell("", "", "na", why=f"n/a: {c.note or short_reason(c)}", title=c.note)
    s = -1.0 if flip else 1.0
    diff = s * c.diff
    interval, why = "", ""
    if c.ci is not None:
        lo, hi = sorted((s * c.ci.low, s * c.ci.high))
        # an interval that excludes 0 must not read as touching it: '[0.03, 0.12]', not '[0.0, 0.1]'
        d = 2 if c.ci.excludes(0.0) and 0.0 in (round(lo, 1), round(hi, 1)) else 1
        interval = f"[{fmt(lo, d)}, {fmt(hi, d)}]"
    else:
        why = f"no interval: {short_reason(c) or c.note}"
    sign = "zero" if round(diff, 1) == 0 else ("pos" if diff > 0 else "neg")
    n = f"n = {c.n_seeds} seed(s) × {c.n_persons} person(s)"
    if c.p is not None:
        title = (f"p = {c.p:.2g}, Holm p = {c.p_holm:.2g} ({c.family} family of "
                 f"{c.family_size}); {n}")  # fmt: skip
    else:
        title = f"no test: {c.note or short_reason(c)}; {n}"
    return MatrixCell(fmt(diff, 1, signed=True), interval, sign,
                      excludes_zero=c.ci is not None and c.ci.excludes(0.0), holm=c.significant,
                      why=why, title=title)  # fmt: skip


def _missing(summary: RunSummary, label: str) -> str:
    for b in summary.branches:
        if b.label == label:
            return f"{label} {b.status}" + (f" ({b.note})" if b.note else "")
    return f"{label} not compared"


def _caption(cs: Sequence[Comparison], what: str) -> str:
    fams = sorted({(c.family, c.family_size) for c in cs if c.p is not None})
    ns = sorted({(c.n_seeds, c.n_persons) for c in cs})
    n = "; ".join(f"{s} seed{'s' if s != 1 else ''} × {p} person{'s' if p != 1 else ''}"
                  for s, p in ns)  # fmt: skip
    fam = ", ".join(f"{f} family of {k}" for f, k in fams) or "none tested"
    untested = sorted({c.note or short_reason(c) for c in cs if c.p is None and c.diff is not None})
    text = (f"Each cell: {what}, the mean paired difference (paired by seed and person; "
            f"positive = the row is better; for HSD the column's minus the row's) with its "
            f"{_level(cs)} CI; n = {n}. ★: survives Holm's correction in its family ({fam}).")
    if untested:
        text += f" Not tested: {'; '.join(untested)}."
    return text


def _header(metric: str) -> str:
    """'ΔDSC (points)': a difference, in the metric's difference unit."""
    return METRICS[metric].header(change=True) if metric in METRICS else metric.upper()


def _level(cs: Sequence[Comparison]) -> str:
    levels = sorted({c.ci.level for c in cs if c.ci is not None})
    return "/".join(f"{lv:.0%}" for lv in levels) or "95%"


def _row_label(summary: RunSummary, label: str) -> str:
    """A method's row label; a planted-effect control (it knows the answer) says so."""
    planted = any(b.label == label and b.planted for b in summary.branches)
    return f"{label} (planted control)" if planted else label


def _method_panel(summary: RunSummary, set_: str, first: str, index, methods,
                  controls) -> MatrixPanel | None:  # fmt: skip
    stats = summary.statistics
    metrics = [m for m in stats.metrics if any(k[2] == set_ and k[3] == m for k in index)]
    if not metrics:
        return None
    rows, used = [], []
    for b in methods:
        cells = []
        for m in metrics:
            for ctl in controls:
                c = index.get((b, ctl, set_, m))
                used += [c] if c is not None else []
                missing = _missing(summary, ctl) if ctl not in stats.controls else \
                    _missing(summary, b)  # fmt: skip
                cells.append(_cell(c, False, missing))
        rows.append((_row_label(summary, b), tuple(cells)))
    groups = tuple((_header(m), len(controls)) for m in metrics)
    pri = stats.primary
    columns = tuple(f"{c} (primary)" if pri is not None and (set_, m) == (pri.set, pri.metric)
                    and c in pri.controls else c for m in metrics for c in controls)  # fmt: skip
    return MatrixPanel(f"matrix-{set_}", f"{set_title(set_)}: methods against the controls",
                       groups, columns, tuple(rows),
                       _caption(used, "row − column"), set_ == first)  # fmt: skip


def _pairs_panel(summary: RunSummary, methods: Sequence[str]) -> MatrixPanel | None:
    stats = summary.statistics
    pairs = stats.family("pairs")
    if not pairs or stats.primary is None:
        return None
    set_, metric = stats.primary.set, stats.primary.metric
    index = {(c.branch, c.control): c for c in pairs}
    rows = []
    for a in methods:
        cells = []
        for b in methods:
            if a == b:
                cells.append(MatrixCell("—", "", "self"))
                continue
            c, flip = (index[(a, b)], False) if (a, b) in index else (index.get((b, a)), True)
            cells.append(_cell(c, flip, f"{a} or {b} not compared"))
        rows.append((_row_label(summary, a), tuple(cells)))
    return MatrixPanel(f"matrix-{set_}-pairs", f"{set_title(set_)}: methods against each other",
                       ((_header(metric), len(methods)),), tuple(methods), tuple(rows),
                       _caption(pairs, "row − column (the pairs family; computed on the "
                                "primary endpoint only)"), True)  # fmt: skip


def comparison_matrix(summary: RunSummary) -> list[MatrixPanel]:
    """The panels, the primary set's first (with the methods x methods panel); [] without
    statistics."""
    stats = summary.statistics
    if stats is None or not stats.comparisons:
        return []
    ada = [b.label for b in summary.branches if b.kind == "ada" and not b.control]
    methods = list(dict.fromkeys([*stats.branches, *ada]))
    ctl = [b.label for b in summary.branches if b.control]
    controls = list(dict.fromkeys([*stats.controls, *ctl]))
    index = {(c.branch, c.control, c.set, c.metric): c for c in stats.comparisons
             if c.family != "pairs"}  # fmt: skip
    first = stats.primary.set if stats.primary is not None else summary.report_set
    sets = [first, *(s for s in ordered_sets(summary, stats.sets) if s != first)]
    panels = []
    for s in sets:
        p = _method_panel(summary, s, first, index, methods, controls)
        if p is not None:
            panels.append(p)
        if s == first and (pp := _pairs_panel(summary, methods)) is not None:
            panels.append(pp)
    if panels and not panels[0].primary:  # the first set compared goes next to the verdict
        panels[0] = replace(panels[0], primary=True)
    return panels
