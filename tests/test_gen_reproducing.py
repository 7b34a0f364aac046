"""docs/gen_reproducing.py: docs/reproducing.md's demo block written from a run folder.

Checked on a tiny real study (a held-out test part, two methods, both controls) against
summary.json read as JSON and results.csv, and against the committed block's format.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
from report_fixtures import held_out_run, read_results, subject_seed_means  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"\| [\w-]+ \|(?: \u2212?\d+\.\d \[\u2212?\d+\.\d, \u2212?\d+\.\d\] \|)+")


def _script():
    spec = importlib.util.spec_from_file_location("gen_reproducing", REPO / "docs" / "gen_reproducing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _between(text: str, begin: str, end: str) -> list[str]:
    return text[text.index(begin) + len(begin) : text.index(end)].strip("\n").splitlines()


def _num(s: str) -> float:
    return float(s.replace("\u2212", "-"))


def test_the_block_is_the_runs_environment_verdict_and_dsc(held_out_run):
    gen = _script()
    summary = json.loads((held_out_run / "summary.json").read_text())
    results = read_results(held_out_run / "results.csv")
    lines = _between(gen.block(held_out_run), gen.BEGIN, gen.END)
    prov = summary["provenance"]
    env = lines[0]
    for fact in (prov["versions"]["torch"], prov["platform"], prov["device"], prov["created"]):
        assert fact in env, fact
    assert "thread" in env  # recorded, or said not to be
    quote = [x for x in lines if x.startswith("> ")]
    assert quote == [f"> {s}" for s in summary["verdict"]["opening"]]
    table = [x for x in lines if x.startswith("|")]
    roles = ("report", "robustness", "probe", "extra")
    sets = [s["name"] for r in roles for s in summary["sets"] if s["role"] == r]
    assert table[0] == "| " + " | ".join(["branch", *sets]) + " |"
    est = {(e["branch"], e["set"]): e for e in summary["other_estimates"] + summary["statistics"]["estimates"]
           if e["metric"] == "dsc"}  # fmt: skip
    assert [r.split(" | ")[0][2:] for r in table[2:]] == [b["label"] for b in summary["branches"]]
    for row in table[2:]:
        assert ROW.fullmatch(row), row
        label, *cells = [c.strip() for c in row.strip("|").split("|")]
        for set_, cell in zip(sets, cells, strict=True):
            m = subject_seed_means(results, set_, label, "dsc")
            seeds = sorted({k[0] for k in m})
            per_seed = [np.mean([v for k, v in m.items() if k[0] == s and not math.isnan(v)]) for s in seeds]
            mean, lo, hi = (_num(x) for x in re.findall(r"\u2212?\d+\.\d", cell))
            assert abs(mean - float(np.mean(per_seed))) <= 0.05 + 1e-9, (label, set_, cell)
            ci = est[(label, set_)]["ci"]
            assert abs(lo - ci["low"]) <= 0.05 + 1e-9 and abs(hi - ci["high"]) <= 0.05 + 1e-9


def test_the_committed_block_has_the_generated_format_and_write_replaces_only_it(held_out_run, tmp_path):
    gen = _script()
    doc = (REPO / "docs" / "reproducing.md").read_text(encoding="utf-8")
    committed = [x for x in _between(doc, gen.BEGIN, gen.END) if x.startswith("|")]
    generated = [x for x in _between(gen.block(held_out_run), gen.BEGIN, gen.END) if x.startswith("|")]
    for rows in (committed, generated):
        assert rows[0].startswith("| branch | test |") and set(rows[1]) <= {"|", "-"}
        assert rows[2:] and all(ROW.fullmatch(r) for r in rows[2:]), rows
    new = gen.block(held_out_run)
    out = gen.replace(doc, new)
    head, tail = doc[: doc.index(gen.BEGIN)], doc[doc.index(gen.END) + len(gen.END) + 1 :]
    assert out == head + new + tail
    assert gen.replace(out, new) == out  # idempotent
