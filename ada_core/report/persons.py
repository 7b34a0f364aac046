"""Persons and sites: who trained, validated and was tested, and how each test person scored.

Two tables, from :attr:`RunSummary.persons` and :attr:`RunSummary.person_scores` (the engine
flagged the failing persons; the report only shows its flags):

- the roster: every person with its site, fold, part, scans and slices;
- the heat map: each person of the report set x each branch, the DSC mean over seeds with the
  seeds' SD, shaded on one sequential scale (0-100), a failing person's row flagged.
"""

from __future__ import annotations

from matplotlib import colormaps
from matplotlib.colors import to_hex

from ada_core.quantities import FAILING_FLOOR
from ada_core.report._format import fmt
from ada_core.report.tables import Cell, Table
from ada_core.runfolder import RunSummary

__all__ = ["heat_shade", "person_heatmap", "persons_table"]

_FLAG = "fails in every branch"
_SCALE = colormaps["YlGnBu"]  # sequential and colour-blind safe


def heat_shade(value: float, low: float = 0.0, high: float = 100.0) -> str:
    """The background of a heat-map cell: a light part of YlGnBu, so dark text stays legible."""
    t = min(1.0, max(0.0, (value - low) / (high - low)))
    return to_hex(_SCALE(0.05 + 0.55 * t))


def _failing(summary: RunSummary) -> set[tuple[str, str]]:
    return {(sc.fold, sc.person) for sc in summary.person_scores if sc.failing}


def persons_table(summary: RunSummary) -> Table | None:
    """Every person: site, fold, part (train / val / test), scans and slices; flagged when it
    fails in every branch."""
    if not summary.persons:
        return None
    failing = _failing(summary)
    rows, csv_rows = [], []
    for fold, parts in summary.persons.items():
        for part in ("train", "val", "test"):
            for p in parts.get(part, []):
                bad = (fold, p.person) in failing
                rows.append((Cell(p.person, numeric=False, strong=bad),
                             Cell(", ".join(p.sites), numeric=False),
                             Cell(fold or "\u2013", numeric=False), Cell(part, numeric=False),
                             Cell(str(len(p.subjects))), Cell(str(p.slices)),
                             Cell(_FLAG if bad else "", numeric=False, strong=bad)))  # fmt: skip
                csv_rows.append((p.person, ";".join(p.sites), fold, part, len(p.subjects),
                                 p.slices, bad))  # fmt: skip
    n_test = sum(len(parts.get(summary.report_set, [])) for parts in summary.persons.values())
    caption = (
        f"Every person of the study with its part in each fold ({n_test} on the report set "
        f"'{summary.report_set}'), its scans (sessions, raters) and slices; their scores are "
        "in the heat map below.",
    )
    return Table("persons", "Every person: site, part, scans", caption,
                 ("person", "site", "fold", "part", "scans", "slices", "flag"), tuple(rows),
                 ("person", "sites", "fold", "part", "scans", "slices", "failing"),
                 tuple(csv_rows), _FLAG)  # fmt: skip


def person_heatmap(summary: RunSummary) -> Table | None:
    """Each report-set person x branch: DSC mean over seeds ± SD (n seeds), shaded 0-100."""
    scores = summary.person_scores
    if not scores:
        return None
    branches = [b.label for b in summary.branches if any(sc.branch == b.label for sc in scores)]
    index = {(sc.fold, sc.person, sc.branch): sc for sc in scores}
    persons = sorted({(sc.fold, sc.person, sc.site) for sc in scores})
    failing = _failing(summary)
    seeds = sorted({sc.n_seeds for sc in scores})
    rows, csv_rows = [], []
    for fold, person, site in persons:
        bad = (fold, person) in failing
        cells = [Cell(person, numeric=False, strong=bad), Cell(site, numeric=False)]
        csv_row: list[object] = [person, site, fold, bad]
        for b in branches:
            sc = index.get((fold, person, b))
            if sc is None or sc.mean is None:
                why = "n/a: not scored" if sc is None else "n/a: undefined in every seed"
                cells.append(Cell(why))
                csv_row += [None, None, 0 if sc is None else sc.n_seeds]
                continue
            text = fmt(sc.mean, 1) + ("" if sc.sd is None else f" \u00b1 {fmt(sc.sd, 1)}")
            if len(seeds) > 1:
                text += f" (n = {sc.n_seeds})"
            cells.append(Cell(text, shade=heat_shade(sc.mean), strong=bad))
            csv_row += [sc.mean, sc.sd, sc.n_seeds]
        cells.append(Cell(_FLAG if bad else "", numeric=False, strong=bad))
        rows.append(tuple(cells))
        csv_rows.append(tuple(csv_row))
    set_ = scores[0].set
    n = f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''}" if len(seeds) == 1 else \
        "n seeds in each cell"  # fmt: skip
    sd = "; \u00b1 the SD over seeds" if max(seeds) > 1 else " (1 seed: no spread)"
    caption = (
        f"DSC (%) of each person of the '{set_}' set in each branch: the mean over {n} of "
        f"the person's mean over its scans{sd}. Shade: the DSC on one scale from 0 (light) to "
        "100 (dark blue), the same for every cell.",
        f"Flagged and bold: a person that fails in every branch (DSC below {FAILING_FLOOR:g}, or "
        "below half the other persons' median, in each branch); the verdict names it.",
    )
    csv_header = ["person", "site", "fold", "failing"]
    for b in branches:
        csv_header += [f"dsc_{b}_mean", f"dsc_{b}_sd", f"dsc_{b}_n_seeds"]
    return Table("person-heatmap", f"DSC per person and branch on the {set_} set", caption,
                 ("person", "site", *branches, "flag"), tuple(rows), tuple(csv_header),
                 tuple(csv_rows), _FLAG)  # fmt: skip
