"""The forest plot of the primary set: each method's paired difference against each control,
with its CI (every set's numbers are in the comparison matrix, :mod:`ada_core.report.matrix`).

Sized to show at its natural width on a 1280 px page, so its labels (10 pt at 110 dpi) are
about 15 px."""

from __future__ import annotations

from matplotlib.lines import Line2D

from ada_core.runfolder import RunSummary
from ada_core.report._figure import ReportFigure, new_figure
from ada_core.report._format import MINUS, holm_significant, set_title, unit

__all__ = ["forest_figure"]

_SIG = "#b2182b"
_NOT = "#555555"


def _xlabel(metric: str, higher_is_better: bool) -> str:
    better = "" if higher_is_better else f" (lower {metric.upper()})"
    name = metric.upper()
    return f"paired difference in {name} ({unit(metric)})\npositive = branch better{better}"


_TICK = 10  # points: 15 px at the page's 110 dpi


def forest_figure(summary: RunSummary) -> ReportFigure | None:
    """One panel per compared metric, one row per (branch, control) on the primary set (the
    reported set without a declared primary endpoint); None without any.

    Each row is the mean paired difference (oriented so that positive = the branch is better)
    with its CI; rows whose Holm-corrected p is below 1 - level are filled and red.
    """
    stats = summary.statistics
    if stats is None or not stats.comparisons:
        return None
    index = {(c.set, c.branch, c.control, c.metric): c for c in stats.comparisons}
    sets = [stats.primary.set if stats.primary is not None else summary.report_set]
    pairs = [(b, c) for b in stats.branches for c in stats.controls]
    rows = [(s, b, c) for s in sets for b, c in pairs
            if any((s, b, c, m) in index for m in stats.metrics)]  # fmt: skip
    metrics = [m for m in stats.metrics if any(k[3] == m for k in index)]
    if not rows or not metrics:
        return None
    fig = new_figure(min(11.0, 2.6 + 2.8 * len(metrics)), max(3.0, 1.6 + 0.34 * len(rows)))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    drawn_sig = drawn_not = False
    for ax, metric in zip(axes, metrics, strict=True):
        hib = True
        for y, (s, b, ctl) in enumerate(rows):
            c = index.get((s, b, ctl, metric))
            if c is None or c.diff is None:
                why = "undefined" if c is not None else "not compared"
                ax.text(0, y, f"n/a: {why}", ha="center", va="center", fontsize=_TICK,
                        color=_NOT)  # fmt: skip
                continue
            hib = c.higher_is_better
            sig = holm_significant(c)
            drawn_sig |= sig
            drawn_not |= not sig
            color = _SIG if sig else _NOT
            err = None if c.ci is None else [[c.diff - c.ci.low], [c.ci.high - c.diff]]
            ax.errorbar(c.diff, y, xerr=err, fmt="o", ms=5, capsize=2, lw=1.2, color=color,
                        mfc=color if sig else "white", mec=color)  # fmt: skip
        ax.axvline(0, color="black", lw=0.9, zorder=0)
        for y in range(1, len(rows)):
            if rows[y][0] != rows[y - 1][0]:
                ax.axhline(y - 0.5, color="#cccccc", lw=0.7, zorder=0)
        ax.set_xlabel(_xlabel(metric, hib), fontsize=_TICK)
        ax.set_title(metric.upper(), fontsize=_TICK + 1)
        ax.tick_params(axis="x", labelsize=_TICK)
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{b} {MINUS} {c}" for _, b, c in rows]
    axes[0].set_yticks(range(len(rows)), labels, fontsize=_TICK)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    axes[0].set_ylabel(f"branch \u2212 control on {set_title(sets[0])}", fontsize=_TICK)
    handles = []
    if drawn_sig:
        label = f"Holm p < {1 - stats.level:.2g}"
        handles.append(Line2D([], [], marker="o", color=_SIG, label=label))
    if drawn_not:
        handles.append(Line2D([], [], marker="o", color=_NOT, mfc="white",
                              label="not significant after Holm"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=_TICK,
               frameon=False)  # fmt: skip
    title = f"Paired differences against the controls on {set_title(sets[0])}"
    return ReportFigure("forest", title, _caption(summary, rows, index), fig)


def _caption(summary: RunSummary, rows, index) -> str:
    stats = summary.statistics
    cs = [c for (s, b, ctl, _), c in index.items() if (s, b, ctl) in set(rows)]
    methods = sorted({c.ci.method for c in cs if c.ci is not None})
    family = sorted({c.family_size for c in cs})
    per_set = []
    for s in dict.fromkeys(r[0] for r in rows):
        ns = sorted({(c.n_seeds, c.n_persons) for c in cs if c.set == s})
        sizes = ", ".join(f"{a} seeds \u00d7 {b} persons" for a, b in ns)
        per_set.append(f"{set_title(s)}: {sizes}")
    n_sig = sum(holm_significant(c) for c in cs)
    untested = sum(c.p_holm is None for c in cs)
    text = (
        f"Each row: the mean paired difference of a branch against a control (paired by seed "
        f"and person), oriented so that positive = the branch is better (for HSD: the "
        f"control's HSD minus the branch's), with its {stats.level:.0%} CI "
        f"({'; '.join(methods) or 'none computable'}). The vertical line marks no difference. "
        + (f"Red filled: Holm-corrected p < {1 - stats.level:.2g} ({n_sig} of the "
           f"{len(cs) - untested} tested; Holm family of {', '.join(map(str, family))}); grey "
           f"open: not significant." if len(cs) > untested else "None could be tested.")
    )
    if untested:
        text += f" {untested} without a p value (see the comparisons table)."
    return text + f" n per set: {'; '.join(per_set)}."
