"""``ada contrast RUN_A RUN_B``: two finished runs paired, per site and overall.

Two runs of one plan that differ in one setting (the twins configs/site-none.toml and
configs/site-zscore.toml differ only in ``data.preprocess.standardise``) give, for every
(seed, fold, branch, set, person), a person mean in each run. The paired difference B - A is
analysed with the study's own statistics (:func:`ada_core.stats.design`: seeds and persons
crossed within a fold, folds as units across folds; t intervals and tests) per site, with
Holm's correction over the sites of each branch, and over all persons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ada_core.errors import InputError
from ada_core.stats import _core
from ada_core.stats._table import Table, person_means, read_table

__all__ = ["ContrastRow", "contrast", "contrast_runs", "differing_settings", "format_contrast"]

_PAIR = ("seed", "fold", "branch", "person")


@dataclass(frozen=True)
class ContrastRow:
    """The paired difference B - A of one branch on one set and metric, at one site (``"all"``:
    every person).

    ``design`` says what the interval covers (``seeds``: one person, over seeds only;
    ``crossed``; ``folds``: folds as units); ``p_holm`` is Holm-adjusted over the sites of the
    branch (NaN on the overall row, which is its own test).
    """

    branch: str
    set: str
    metric: str
    site: str
    n_persons: int
    n_seeds: int
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    df: float
    p: float
    p_holm: float
    design: str


def _where_differ(a: Table, b: Table, set_: str) -> str:
    parts = []
    for col in ("seed", "fold", "branch", "set", "person", "site"):
        va, vb = set(a.values(col)), set(b.values(col))
        if va != vb:
            parts.append(f"{col}: only in A {sorted(va - vb)[:6]}, only in B {sorted(vb - va)[:6]}")
    if not parts:
        parts.append(f"the same columns but other (seed, fold, branch, person) rows on set {set_!r}")
    return "; ".join(parts)


def _paired(a: Table, b: Table, set_: str, metric: str) -> dict[str, np.ndarray]:
    """Per (seed, fold, branch, person) of both runs: site, the two means; refuses runs whose
    rows do not pair."""
    for t, name in ((a, "A"), (b, "B")):
        if metric not in t.metrics:
            raise InputError(f"run {name} ({t.source}) has no metric {metric!r}; its metrics are "
                             f"{list(t.metrics)}")  # fmt: skip
        if set_ not in t.values("set"):
            raise InputError(f"run {name} ({t.source}) has no set {set_!r}; its sets are "
                             f"{t.values('set')}")  # fmt: skip
    pa, pb = person_means(a, set_, [metric])[metric], person_means(b, set_, [metric])[metric]
    ka = {tuple(str(getattr(pa, c)[i]) for c in _PAIR): i for i in range(len(pa.mean))}
    kb = {tuple(str(getattr(pb, c)[i]) for c in _PAIR): i for i in range(len(pb.mean))}
    if ka.keys() != kb.keys():
        raise InputError(
            f"runs {a.source} and {b.source} do not pair: the (seed, fold, branch, person) rows "
            f"of set {set_!r} differ ({_where_differ(a, b, set_)}); contrast two runs of the "
            "same plan (seeds, folds, branches, split) that differ in one setting"
        )
    keys = sorted(ka)
    ia, ib = [ka[k] for k in keys], [kb[k] for k in keys]
    site_a, site_b = pa.site[ia], pb.site[ib]
    if not np.array_equal(site_a, site_b):
        raise InputError(f"runs {a.source} and {b.source} do not pair: persons have other sites")
    cols = {c: np.asarray([k[j] for k in keys]) for j, c in enumerate(_PAIR)}
    return {**cols, "site": site_a, "a": pa.mean[ia], "b": pb.mean[ib]}


def _row(p: dict[str, np.ndarray], rows: np.ndarray, branch: str, set_: str, metric: str,
         site: str, level: float) -> ContrastRow | None:  # fmt: skip
    seeds = sorted(set(p["seed"][rows].tolist()), key=int)
    persons = sorted({(f, q) for f, q in zip(p["fold"][rows], p["person"][rows], strict=True)})
    y = np.full((len(seeds), len(persons)), np.nan)
    ya, yb = y.copy(), y.copy()
    for i in np.flatnonzero(rows):
        s, j = seeds.index(p["seed"][i]), persons.index((p["fold"][i], p["person"][i]))
        y[s, j], ya[s, j], yb[s, j] = p["b"][i] - p["a"][i], p["a"][i], p["b"][i]
    keep = ~np.isnan(y).any(0)  # a person undefined under any seed leaves the pairing
    if not keep.any():
        return None
    folds = sorted({f for (f, _), k in zip(persons, keep, strict=True) if k})
    code = np.asarray([folds.index(f) for (f, _), k in zip(persons, keep, strict=True) if k])
    d = _core.design(y[:, keep], code)
    mean, se, df = float(d.mean[0]), float(d.se[0]), float(d.df[0])
    lo, hi = (float(v[0]) for v in _core.t_interval(d.mean, d.se, d.df, level))
    pval = float(_core.t_test(d.mean, d.se, d.df)[0]) if np.isfinite(df) else float("nan")
    return ContrastRow(branch, set_, metric, site, int(keep.sum()), len(seeds),
                       float(np.mean(ya[:, keep])), float(np.mean(yb[:, keep])), mean, lo, hi,
                       df, pval, float("nan"), d.kind)  # fmt: skip


def contrast(a: Table, b: Table, *, set_: str, metric: str, level: float = 0.95
             ) -> list[ContrastRow]:  # fmt: skip
    """The paired difference B - A per branch, per site (Holm over the sites) and overall.

    Raises:
        InputError: the runs do not pair (the differing seeds, folds, branches, sets or
            persons are named), or lack the set or metric.
    """
    p = _paired(a, b, set_, metric)
    out: list[ContrastRow] = []
    for branch in sorted(set(p["branch"].tolist())):
        mine = p["branch"] == branch
        sites = [r for s in sorted(set(p["site"][mine].tolist()))
                 if (r := _row(p, mine & (p["site"] == s), branch, set_, metric, s, level))]
        adj = _core.holm([r.p for r in sites]) if sites else []
        out += [ContrastRow(**{**r.__dict__, "p_holm": float(q)}) for r, q in zip(sites, adj, strict=True)]
        overall = _row(p, mine, branch, set_, metric, "all", level)
        if overall is not None:
            out.append(overall)
    return out


def contrast_runs(run_a: str | Path, run_b: str | Path, *, set_: str | None = None,
                  metric: str = "dsc", level: float = 0.95) -> list[ContrastRow]:  # fmt: skip
    """:func:`contrast` of two run folders' results tables; ``set_`` None: ``test`` where
    both runs have a test part, else ``val``."""
    from ada_core.runfolder import RunLayout

    tables = []
    for run in (run_a, run_b):
        path = RunLayout(Path(run)).results
        if not path.is_file():
            raise InputError(f"{run}: no {path.name}; finish the run (`ada compare`, or `ada "
                             "aggregate` after shards) before contrasting it")  # fmt: skip
        tables.append(read_table(path))
    if set_ is None:
        set_ = "test" if all("test" in t.values("set") for t in tables) else "val"
    return contrast(tables[0], tables[1], set_=set_, metric=metric, level=level)


def differing_settings(run_a: str | Path, run_b: str | Path) -> list[tuple[str, object, object]]:
    """``(dotted key, A's value, B's value)`` of every setting in the runs' resolved configurations
    that differs, the run name and output folder left out (what the contrast is of)."""
    import json

    from ada_core.engine.keys import diff
    from ada_core.runfolder import RunLayout

    configs = []
    for run in (run_a, run_b):
        path = RunLayout(Path(run)).config_json
        configs.append(json.loads(path.read_text()) if path.is_file() else {})
    rows = diff(*configs)
    return [r for r in rows if r[0] not in ("name", "output")]


def format_contrast(rows: list[ContrastRow], a: str, b: str) -> str:
    """The rows as a plain-text table (B - A, its interval, p and Holm's p)."""
    head = (f"paired difference B - A (A = {a}, B = {b}); per site Holm over sites\n"
            f"{'branch':<10} {'set':<5} {'metric':<7} {'site':<10} {'n':>3} {'seeds':>5} "
            f"{'A':>7} {'B':>7} {'B-A':>8} {'interval':>20} {'p':>7} {'p_holm':>7} design")
    lines = [head]
    for r in rows:
        lines.append(f"{r.branch:<10} {r.set:<5} {r.metric:<7} {r.site:<10} {r.n_persons:>3} "
                     f"{r.n_seeds:>5} {r.mean_a:>7.3f} {r.mean_b:>7.3f} {r.diff:>+8.3f} "
                     f"{f'[{r.low:+.3f}, {r.high:+.3f}]':>20} {r.p:>7.3g} {r.p_holm:>7.3g} "
                     f"{r.design}")  # fmt: skip
    return "\n".join(lines) + "\n"
