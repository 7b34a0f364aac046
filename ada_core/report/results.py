"""The report's tables, built from a :class:`~ada_core.runfolder.RunSummary`.

Every number comes from the summary (which the engine computed from ``results.csv``); every
caption sentence is generated from the numbers in its table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ada_core.runfolder import RunSummary, SetRecord
from ada_core.report._format import (
    CHANGE_SETS,
    METRICS,
    fmt,
    fmt_ci,
    fmt_p,
    holm_significant,
    metric_header,
    ordered_sets,
    set_title,
    unit,
)
from ada_core.report.matrix import short_reason
from ada_core.report.tables import Cell, Table
from ada_core.stats import Comparison, Estimate

__all__ = ["branch_table", "comparison_table", "convergence_table", "estimate_tables", "iou_table"]

_CSV_QUANTITIES = ("mean", "ci_low", "ci_high", "n_persons", "n_undefined")


def _estimates(summary: RunSummary) -> dict[tuple[str, str, str], Estimate]:
    """(branch, set, metric) -> estimate; the comparisons' own estimates win over the others."""
    out = {(e.branch, e.set, e.metric): e for e in summary.other_estimates}
    if summary.statistics is not None:
        out.update({(e.branch, e.set, e.metric): e for e in summary.statistics.estimates})
    return out


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _n(seeds: int, persons: int) -> str:
    return f"{seeds} \u00d7 {persons}"


def _interval_sentence(ests: Iterable[Estimate]) -> str:
    ests = list(ests)
    kinds = sorted({(e.ci.level, e.ci.method) for e in ests if e.ci is not None})
    covers = sorted({e.interval for e in ests if e.ci is not None})
    if not kinds:
        return "No interval could be computed."
    what = "; ".join(f"{lvl:.0%} CI by {m}" for lvl, m in kinds)
    return f"Brackets: the {what}; it covers variation over {' / '.join(covers)}."


def _why_no_ci(e: Estimate) -> str:
    return f"[n/a]: no interval could be computed ({e.interval})"


def _no_ci(e: Estimate) -> str:
    """Why ``e`` has no interval, in a few words (its note says it in full)."""
    if e.mean is None:
        return "undefined"
    if "every person's" in e.note:
        return "no variation"
    if e.n_seeds == 1 and e.n_persons == 1:
        return "1 seed \u00d7 1 person"
    return "no interval"


def _best(ests: Sequence[Estimate | None]) -> set[int]:
    """The cells holding a column's best mean: only cells with an interval count (a value
    without one is no evidence of anything), and a column where they all tie has none."""
    vals = [(i, round(e.mean, 2)) for i, e in enumerate(ests)
            if e is not None and e.mean is not None and e.ci is not None]  # fmt: skip
    if not vals or (len(vals) > 1 and len({v for _, v in vals}) == 1):
        return set()
    hib = next(e for e in ests if e is not None).higher_is_better
    target = max(v for _, v in vals) if hib else min(v for _, v in vals)
    return {i for i, v in vals if v == target}


def _estimate_table(summary: RunSummary, rec: SetRecord, index) -> Table | None:
    labels = [b.label for b in summary.branches
              if any((b.label, rec.name, m) in index for m in METRICS)]  # fmt: skip
    metrics = [m for m in METRICS if any((b, rec.name, m) in index for b in labels)]
    if not labels:
        return None
    grid = [[index.get((b, rec.name, m)) for m in metrics] for b in labels]
    best = [_best([row[j] for row in grid]) for j in range(len(metrics))]
    rows, csv_rows, notes = [], [], {}
    for i, (label, ests) in enumerate(zip(labels, grid, strict=True)):
        ref = next(e for e in ests if e is not None)
        cells = [Cell(label, numeric=False)]
        csv_row: list[object] = [rec.name, label, ref.n_seeds, ref.n_persons, ref.n_slices]
        for j, e in enumerate(ests):
            if e is None:
                cells.append(Cell("n/a: not estimated", note="not estimated on this set"))
                csv_row += [None] * 5
                continue
            if e.mean is None:
                text = "n/a: undefined on every slice"
            else:
                text = fmt(e.mean) + (f" {fmt_ci(e.ci.low, e.ci.high)}" if e.ci else
                                      f" [n/a: {_no_ci(e)}]")  # fmt: skip
            note = e.note or ("" if e.ci or e.mean is None else _why_no_ci(e))
            if (e.n_seeds, e.n_persons) != (ref.n_seeds, ref.n_persons):
                text += " \u2020"
                note = (f"n = {_n(e.n_seeds, e.n_persons)} ({e.n_persons_dropped} person(s) "
                        f"undefined in some seed left out). {note}").strip()  # fmt: skip
            if note:
                notes.setdefault(note, []).append(f"{e.metric.upper()} of {label}")
            cells.append(Cell(text, strong=i in best[j], note=note))
            csv_row += [e.mean, e.ci.low if e.ci else None, e.ci.high if e.ci else None,
                        e.n_persons, e.n_undefined]  # fmt: skip
        hsd = ests[metrics.index("hsd")] if "hsd" in metrics else None
        cells += [Cell(_n(ref.n_seeds, ref.n_persons)), Cell(str(ref.n_slices))]
        if "hsd" in metrics:
            cells.append(Cell("n/a: HSD not estimated" if hsd is None else
                              f"{hsd.n_undefined} of {hsd.n_slices}"))  # fmt: skip
        rows.append(tuple(cells))
        csv_rows.append(tuple(csv_row))
    header = ["branch", *(metric_header(m, rec.name) for m in metrics), "seeds \u00d7 persons",
              "slices"] + (["HSD undefined (slices)"] if "hsd" in metrics else [])  # fmt: skip
    csv_header = ["set", "branch", "n_seeds", "n_persons", "n_slices"]
    for m in metrics:
        csv_header += [f"{m}_{q}" for q in _CSV_QUANTITIES]
    all_ests = [e for row in grid for e in row if e is not None]
    caption = [
        f"{rec.description[:1].upper()}{rec.description[1:]}; {rec.n_persons} person(s) "
        f"({rec.n_subjects} scan(s)), "
        f"{rec.n_slices} slices per replicate.",
        "Each cell: the mean over seeds of the mean over persons of each person's mean over "
        "its scans' slice means (with folds: the mean of the fold means)" + (", as a change against the un-occluded metric."
                  if rec.name in CHANGE_SETS else "."),
        _interval_sentence(all_ests),
        "Higher is better for " + ", ".join(m.upper() for m in metrics if m != "hsd") +
        ("; lower for HSD (mm), which is undefined on a slice with an empty prediction or "
         "ground truth." if "hsd" in metrics else "."),
    ]  # fmt: skip
    absent = [m.upper() for m in METRICS if m not in metrics]
    if absent:
        caption.append(f"{', '.join(absent)} not estimated on this set.")
    n_cells = sum(e is not None for row in grid for e in row)
    for n, who in notes.items():
        cells = "every cell" if len(who) == n_cells else ", ".join(who)
        caption.append(_sentence(f"{n.rstrip('.')} ({cells})"))
    title = set_title(rec.name) + (" (reported set)" if rec.name == summary.report_set else "")
    return Table(f"estimates-{rec.name}", title, tuple(caption), tuple(header), tuple(rows),
                 tuple(csv_header), tuple(csv_rows),
                 "the best value of each column among the cells with an interval (none where "
                 "they all tie)")  # fmt: skip


def estimate_tables(summary: RunSummary) -> list[Table]:
    """Per evaluation set (the reported set first): branches x DSC, HSD, TPR, TNR, PPV."""
    index = _estimates(summary)
    by_name = {s.name: s for s in summary.sets}
    names = ordered_sets(summary, list(by_name))
    tables = [_estimate_table(summary, by_name[n], index) for n in names]
    return [t for t in tables if t is not None]


def _why_no_seeds(c: Comparison) -> str:
    if c.needed_note.startswith("seeds alone"):
        return "n/a: seeds alone cannot"
    if c.needed_note.startswith("more than"):
        return "n/a: > 10000"
    return f"n/a: {short_reason(c) or 'not projected'}"


def comparison_table(summary: RunSummary) -> Table | None:
    """Every paired comparison: difference with CI, p, Holm p, effect size, MDE, seeds needed."""
    stats = summary.statistics
    if stats is None or not stats.comparisons:
        return None
    sets = ordered_sets(summary, stats.sets)
    order = {s: i for i, s in enumerate(sets)}
    cs = sorted(stats.comparisons, key=lambda c: (
        order.get(c.set, len(order)), stats.metrics.index(c.metric), c.branch, c.control))
    rows, csv_rows, notes = [], [], {}
    for c in cs:
        sig = holm_significant(c)
        diff = fmt(c.diff, signed=True) + (f" {fmt_ci(c.ci.low, c.ci.high)}" if c.ci else "")
        why = short_reason(c)
        na = f"n/a: {why or 'not computed'}"
        need = str(c.seeds_needed) if c.seeds_needed is not None else _why_no_seeds(c)
        dz = fmt(c.effect_size) if c.effect_size is not None else \
            ("n/a: < 3 persons" if c.n_persons < 3 else na if why else "n/a: no variation")
        for n in (c.note, c.needed_note):
            if n:
                notes[n] = None
        first, second = (c.branch, c.control) if c.higher_is_better else (c.control, c.branch)
        rows.append((
            Cell(set_title(c.set), numeric=False),
            Cell(f"{c.metric.upper()} ({unit(c.metric)})", numeric=False),
            Cell(f"{first} \u2212 {second}", numeric=False, note=c.orientation),
            Cell(diff, strong=sig, note=c.note),
            Cell(fmt_p(c.p) if c.p is not None else na, note=c.note),
            Cell(fmt_p(c.p_holm) if c.p_holm is not None else na, strong=sig),
            Cell(dz),
            Cell(fmt(c.mde) if c.mde is not None else na),
            Cell(need, note=c.needed_note),
            Cell(_n(c.n_seeds, c.n_persons)),
        ))
        csv_rows.append((c.set, c.metric, c.branch, c.control, c.orientation, c.diff,
                         c.ci.low if c.ci else None, c.ci.high if c.ci else None, c.p, c.p_holm,
                         c.family_size, c.effect_size, c.mde, c.resolve, c.seeds_needed, c.n_seeds,
                         c.n_persons, c.n_persons_dropped, sig, c.test))  # fmt: skip
    header = ("set", "metric", "difference", f"diff. [{stats.level:.0%} CI]", "p", "Holm p",
              "d_z", "MDE", f"seeds for MDE \u2264 {fmt(cs[0].resolve)}",
              "seeds \u00d7 persons")  # fmt: skip
    csv_header = ("set", "metric", "branch", "control", "orientation", "diff", "ci_low",
                  "ci_high", "p", "p_holm", "family_size", "effect_size", "mde", "resolve",
                  "seeds_needed", "n_seeds", "n_persons", "n_persons_dropped",
                  "holm_significant", "test")  # fmt: skip
    tests = sorted({c.test for c in cs})
    methods = sorted({c.ci.method for c in cs if c.ci})
    resolve = sorted({c.resolve for c in cs})
    caption = (
        "Paired by seed and person; the difference is oriented so that positive = the branch "
        "is better (for HSD, the control's minus the branch's).",
        f"{stats.level:.0%} CI by {'; '.join(methods) or 'n/a'}; p by {'; '.join(tests)}; Holm p "
        f"corrected within each family (primary, pairs, secondary: "
        f"{', '.join(sorted({str(c.family_size) for c in cs}))} comparisons).",
        f"d_z: {cs[0].effect}. MDE: the smallest difference detectable with {stats.power:.0%} "
        f"power by a two-sided test at Holm's first step of its family (\u03b1 / family size) "
        f"with these seeds and persons; the next column: seeds (with these persons) for an MDE \u2264 "
        f"{' / '.join(fmt(r) for r in resolve)} of the metric's unit.",
        *(_sentence(n) for n in notes if n),
    )
    return Table("comparisons", "Comparisons against the controls", caption, header, tuple(rows),
                 csv_header, tuple(csv_rows), f"Holm p < {1 - stats.level:.2g}")  # fmt: skip


def convergence_table(summary: RunSummary, best_dsc: float | None) -> Table | None:
    """Epochs to the common DSC target per replicate, and the mean DSC over the ADA epochs.

    Args:
        summary: the run summary.
        best_dsc: the best validation DSC any branch reached (from the curves), to say which
            fraction of it the target is; None when unknown.
    """
    if not summary.convergence or summary.convergence_target is None:
        return None
    rows, csv_rows = [], []
    for rec in summary.convergence:
        jobs = [j for j in summary.jobs if j.label == rec.label and j.status == "done"]
        names = [f"{j.fold + '/' if j.fold else ''}seed {j.seed}" for j in jobs]
        names += [f"replicate {i + 1}" for i in range(len(names), len(rec.epochs_to_target))]
        hits = [h for h in rec.epochs_to_target if h is not None]
        means = [m for m in rec.mean_dsc if m is not None and not math.isnan(m)]
        per = "; ".join(f"{n}: {'never' if h is None else h}"
                        for n, h in zip(names, rec.epochs_to_target, strict=False))  # fmt: skip
        mean = (fmt(sum(means) / len(means)) + (f" [{fmt(min(means))}, {fmt(max(means))}]"
                if len(means) > 1 else "")) if means else "n/a: no ADA epoch recorded"  # fmt: skip
        rows.append((Cell(rec.label, numeric=False),
                     Cell(f"{len(hits)} of {len(rec.epochs_to_target)}"),
                     Cell(per, numeric=False), Cell(mean)))  # fmt: skip
        for n, h, m in zip(names, rec.epochs_to_target, rec.mean_dsc, strict=False):
            csv_rows.append((rec.label, n, h, m, summary.convergence_target))
    target = summary.convergence_target
    of = (f", {target / best_dsc:.0%} of the best validation DSC any branch reached "
          f"({fmt(best_dsc)})" if best_dsc else "")  # fmt: skip
    caption = (
        f"Target: validation DSC {fmt(target)}{of}. Epochs to target: the first ADA epoch "
        "whose validation DSC reached it, per replicate ('never': not within the run).",
        "Mean DSC: the mean validation DSC over all ADA epochs of a replicate (higher = better "
        "earlier), averaged over replicates, with [minimum, maximum] over replicates.",
    )
    return Table("convergence-table", "Convergence", caption,
                 ("branch", "reached target", "ADA epochs to target",
                  "mean DSC over ADA epochs (%)"),
                 tuple(rows), ("branch", "replicate", "epochs_to_target", "mean_dsc", "target"),
                 tuple(csv_rows))  # fmt: skip


def iou_table(summary: RunSummary) -> Table | None:
    """The IoU matrix of Figure 4 as a table; None with fewer than two methods (no pair)."""
    iou = summary.iou
    if iou is None or len(iou.names) < 2:
        return None
    rows = tuple((Cell(a, numeric=False), *(Cell(fmt(v)) for v in row))
                 for a, row in zip(iou.names, iou.matrix, strict=True))  # fmt: skip
    csv_rows = tuple((a, *row) for a, row in zip(iou.names, iou.matrix, strict=True))
    caption = (f"Mean first-cycle erased-region IoU over {iou.n_images} training images from "
               f"{iou.n_replicates} replicate(s).",)  # fmt: skip
    return Table("iou-table", "Erased-region IoU", caption, ("method", *iou.names), rows,
                 ("method", *iou.names), csv_rows)  # fmt: skip


def branch_table(summary: RunSummary) -> Table:
    """Every branch's status: replicates done of planned, and what is missing."""
    rows, csv_rows = [], []
    for b in summary.branches:
        kind = b.kind + (" (control)" if b.control and b.kind != "control" else "")
        rows.append((Cell(b.label, numeric=False), Cell(b.method, numeric=False),
                     Cell(kind, numeric=False),
                     Cell(b.status, numeric=False, strong=b.status != "done"),
                     Cell(f"{b.replicates_done} of {b.replicates}"),
                     Cell(b.note or "", numeric=False)))  # fmt: skip
        csv_rows.append((b.label, b.method, b.kind, b.control, b.status, b.replicates_done,
                         b.replicates, b.note))  # fmt: skip
    done = sum(b.status == "done" for b in summary.branches)
    caption = (f"{done} of {len(summary.branches)} branches finished every replicate.",)
    return Table("branches", "Branches", caption,
                 ("branch", "method", "kind", "status", "replicates done", "what is missing"),
                 tuple(rows), ("label", "method", "kind", "control", "status", "replicates_done",
                               "replicates", "note"), tuple(csv_rows), "not finished")  # fmt: skip
