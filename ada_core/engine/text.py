"""``summary.txt``: the verdict first, then every table of a :class:`RunSummary` as text.

Each cell is ``mean [low, high]``: the mean over seeds of the subject-averaged metric and its
95% confidence interval with seeds and subjects both random (subjects only with one seed);
the header of each table states the n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ada_core.quantities import METRICS, PAPER_METRICS
from ada_core.runfolder import RunSummary
from ada_core.stats import Comparison, Estimate

__all__ = ["format_summary", "format_table"]

#: (header, metric) of the paper's tables.
TABLE_COLUMNS = tuple((f"{METRICS[m].label} {METRICS[m].unit}", m) for m in PAPER_METRICS)


def _num(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _cell(e: Estimate | None) -> str:
    if e is None or e.mean is None:
        return "n/a"
    if e.ci is None:
        return _num(e.mean)
    return f"{e.mean:.2f} [{e.ci.low:.2f}, {e.ci.high:.2f}]"


def format_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with a title and rules."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *(line(r) for r in rows), rule])


def _estimates(summary: RunSummary) -> dict[tuple[str, str, str], Estimate]:
    out = {(e.branch, e.set, e.metric): e for e in summary.other_estimates}
    if summary.statistics is not None:
        out.update({(e.branch, e.set, e.metric): e for e in summary.statistics.estimates})
    return out


def _set_table(summary: RunSummary, name: str, est: dict) -> str | None:
    labels = [b.label for b in summary.branches if b.status == "done"]
    rows = []
    for label in labels:
        cells = [_cell(est.get((label, name, m))) for _, m in TABLE_COLUMNS]
        if any(c != "n/a" for c in cells):
            rows.append([label, *cells])
    if not rows:
        return None
    record = next(s for s in summary.sets if s.name == name)
    any_e = next((e for (b, s, m), e in est.items() if s == name and m == "dsc"), None)
    n = (f"{any_e.n_seeds} seed(s) x {any_e.n_persons} persons, {record.n_slices} slices per "
         f"seed; intervals: 95% CI, {any_e.interval}") if any_e else ""  # fmt: skip
    hsd = next((e for (b, s, m), e in est.items() if s == name and m == "hsd"), None)
    undefined = f"; HSD undefined on {hsd.n_undefined} of {hsd.n_slices} slices" if hsd and hsd.n_undefined else ""
    title = f"{name}: {record.description}\n({n}{undefined})"
    return format_table(title, ["branch", *(h for h, _ in TABLE_COLUMNS)], rows)


def _comparisons(comps: Sequence[Comparison], metric: str, family: str) -> str | None:
    rows = []
    for c in comps:
        if c.metric != metric or c.family != family:
            continue
        ci = f"[{c.ci.low:+.2f}, {c.ci.high:+.2f}]" if c.ci else "n/a"
        rows.append([c.set, f"{c.branch} vs {c.control}", _num(c.diff) if c.diff is None else f"{c.diff:+.2f}",
                     ci, _num(c.p, 3), _num(c.p_holm, 3), _num(c.effect_size), _num(c.mde)])  # fmt: skip
    if not rows:
        return None
    head = next(c for c in comps if c.metric == metric and c.family == family)
    name = {"primary": "Primary", "pairs": "Method against method", "secondary":
            "Secondary (exploratory)"}[family]  # fmt: skip
    title = (f"{name} paired differences, {metric.upper()} (positive = the branch is better; "
             f"Holm over the {head.family_size} tests of this family at alpha = {head.alpha:g}; "
             f"effect: {head.effect}; MDE: smallest difference detectable with 80% power at "
             f"Holm's first step)")  # fmt: skip
    return format_table(title, ["set", "comparison", "diff", "95% CI", "p", "Holm p", "effect", "MDE"], rows)


def format_summary(summary: RunSummary) -> str:
    """The whole summary as text: verdict, missing work, tables, comparisons, IoU, convergence."""
    v = summary.verdict
    parts = ["Verdict", "-------", *v.opening]
    if v.caveats:
        parts += ["", *v.caveats]
    for d in v.details:
        parts += ["", f"Details, {d.set}:", *(f"  {x}" for x in d.sentences)]
    if summary.missing:
        parts += ["", "Missing or failed:", *(f"  {m}" for m in summary.missing)]
    est = _estimates(summary)
    for s in summary.sets:
        if s.role == "convergence":
            continue
        table = _set_table(summary, s.name, est)
        if table:
            parts += ["", table]
    if summary.statistics is not None:
        st = summary.statistics
        if st.omnibus is not None and st.omnibus.p is not None:
            o = st.omnibus
            parts += ["", f"Omnibus ({o.set} {o.metric.upper()}, {len(o.methods)} methods, "
                      f"{o.n_seeds} seeds x {o.n_persons} persons): {o.test} F = {o.f:.3f} on "
                      f"{o.df1:.2f} and {o.df2:.2f} df, p = {o.p:.4f}"]  # fmt: skip
        for family in ("primary", "pairs", "secondary"):
            for metric in st.metrics:
                table = _comparisons(st.comparisons, metric, family)
                if table:
                    parts += ["", table]
    if summary.convergence:
        rows = [[c.label, " ".join("never" if e is None else str(e) for e in c.epochs_to_target),
                 " ".join(_num(m) for m in c.mean_dsc)] for c in summary.convergence]  # fmt: skip
        parts += ["", format_table(
            f"Convergence: ADA epochs until validation DSC >= {_num(summary.convergence_target)} "
            "(95% of the best branch), and mean validation DSC, per replicate",
            ["branch", "epochs to target", "mean DSC %"], rows)]  # fmt: skip
    if summary.iou is not None and len(summary.iou.names) >= 2:  # one method has no pair
        iou = summary.iou
        rows = [[n, *(_num(v, 3) for v in row)] for n, row in zip(iou.names, iou.matrix, strict=True)]
        parts += ["", format_table(
            f"First-cycle erased-region IoU (mean over {iou.n_replicates} replicate(s), "
            f"{iou.n_images} images)", ["", *iou.names], rows)]  # fmt: skip
    return "\n".join(parts) + "\n"
