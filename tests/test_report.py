"""report.html of a tiny real 2-seed study, checked against an independent recomputation.

Every table value is recomputed from results.csv (subject means, then seed means) or read
from summary.json as JSON (not through the report's code); the figures are checked in
test_report_figures.py.
"""

from __future__ import annotations

import base64
import csv
import fnmatch
import html
import io
import json
import math
import re
import shutil
import tomllib
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import (  # noqa: F401 - fixtures
    page,
    page_html,
    parse_page,
    read_results,
    results,
    run,
    subject_seed_means,
    summary,
    held_out_run,
)

from ada_core.cli import main
from ada_core.errors import DataError
from ada_core.report import write_report
from ada_core.report.tables import latex_escape

REPO = Path(__file__).resolve().parents[1]
HIB = {"dsc": True, "hsd": False, "tpr": True, "tnr": True, "ppv": True, "fail": False,
       "hd95": False, "hd95_monai": False}


def nums(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?", text.replace("\u2212", "-"))]


def close(shown: float, value: float, digits: int = 2) -> bool:
    return abs(shown - value) <= 0.5 * 10**-digits + 1e-9


def says_why(text: str) -> bool:
    """An 'n/a' followed by its reason, in place."""
    return re.fullmatch(r"n/a: \S.*", text) is not None


def p_close(text: str, p: float | None) -> bool:
    if p is None:
        return says_why(text)
    if text == "< 0.001":
        return p < 0.001
    shown = float(text)
    return abs(shown - p) <= (0.005 if p >= 0.1 else 0.051 * p) + 1e-12


def estimate(summary, branch, set_, metric) -> dict | None:
    found = None
    for e in summary["other_estimates"] + (summary["statistics"] or {}).get("estimates", []):
        if (e["branch"], e["set"], e["metric"]) == (branch, set_, metric):
            found = e  # the comparisons' estimates come last and win
    return found


def recompute(results, set_, branch, metric):
    """(mean over seeds of the subject means, n seeds, n subjects) on subjects defined in every seed."""
    m = subject_seed_means(results, set_, branch, metric)
    seeds = sorted({k[0] for k in m})
    subjects = sorted({k[1:] for k in m})
    keep = [s for s in subjects if all(not math.isnan(m.get((seed, *s), math.nan)) for seed in seeds)]
    if not keep:
        return None, len(seeds), 0
    per_seed = [np.mean([m[(seed, *s)] for s in keep]) for seed in seeds]
    return float(np.mean(per_seed)), len(seeds), len(keep)


def metric_columns(header: list[str]) -> dict[str, int]:
    out = {}
    for i, h in enumerate(header):
        m = re.fullmatch(r"\u0394?([A-Z0-9]+) \((%|mm|points)\)", h)
        if m and m[1].lower() in HIB:
            out[m[1].lower()] = i
    return out


# ------------------------------------------------------------------------------ tables
def test_every_set_table_matches_the_tidy_table(summary, results, page):
    for rec in summary["sets"]:
        t = page.tables[f"estimates-{rec['name']}"]
        cols = metric_columns(t.header)
        assert "dsc" in cols and "hsd" in cols, t.header
        branches = {r["branch"] for r in results if r["set"] == rec["name"]}
        assert {row[0][0] for row in t.rows} == branches
        means = defaultdict(dict)
        for row in t.rows:
            label = row[0][0]
            for metric, j in cols.items():
                mean, n_seeds, n_subj = recompute(results, rec["name"], label, metric)
                shown = nums(row[j][0])
                assert close(shown[0], mean), (rec["name"], label, metric, row[j], mean)
                e = estimate(summary, label, rec["name"], metric)
                if e["ci"] is not None:
                    assert close(shown[1], e["ci"]["low"]) and close(shown[2], e["ci"]["high"])
                    means[metric][label] = round(mean, 2)
                else:
                    assert re.search(r"\[n/a: \w[^\]]*\]", row[j][0]), row[j]
            mine = [r for r in results if r["set"] == rec["name"] and r["branch"] == label]
            _, n_seeds, n_subj = recompute(results, rec["name"], label, "dsc")
            last = max(cols.values())
            assert row[last + 1][0] == f"{n_seeds} \u00d7 {n_subj}"
            assert row[last + 2][0] == str(len(mine))
            undefined = sum(math.isnan(r["hsd"]) for r in mine)
            assert row[-1][0] == f"{undefined} of {len(mine)}"
        for metric, j in cols.items():
            # the best of each column among the cells with an interval, and only it, is bold;
            # a value without an interval is never best, and a column that ties has no best
            vals = means[metric]
            tie = len(vals) > 1 and len(set(vals.values())) == 1
            best = (max if HIB[metric] else min)(vals.values()) if vals else None
            for row in t.rows:
                want = not tie and row[0][0] in vals and vals[row[0][0]] == best
                assert row[j][1] == want, (rec["name"], metric, row)
        n_rep = len({(r["seed"], r["branch"]) for r in results if r["set"] == rec["name"]})
        per_rep = sum(r["set"] == rec["name"] for r in results) // n_rep
        n_persons = len({r["person"] for r in results if r["set"] == rec["name"]})
        assert (f"{n_persons} person(s) ({rec['n_subjects']} scan(s)), {per_rep} slices per "
                "replicate") in t.caption
        method = next(e["ci"]["method"] for e in [*summary["statistics"]["estimates"],
                                                    *summary["other_estimates"]]
                      if e["set"] == rec["name"] and e["ci"] is not None)
        assert f"95% CI by {method}" in t.caption and "seeds and persons" in t.caption


def holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def test_comparison_table_matches_recomputed_differences(summary, results, page):
    comps = summary["statistics"]["comparisons"]
    tested = [c for c in comps if c["p"] is not None]
    t = page.tables["comparisons"]
    assert len(t.rows) == len(comps)
    for c in comps:
        pair = {c["branch"], c["control"]}
        [row] = [r for r in t.rows if r[0][0].split(" (")[0] == c["set"] and r[1][0].startswith(c["metric"].upper())
                 and set(r[2][0].split(" \u2212 ")) == pair]  # fmt: skip
        sign = 1 if HIB[c["metric"]] else -1
        mb = subject_seed_means(results, c["set"], c["branch"], c["metric"])
        mc = subject_seed_means(results, c["set"], c["control"], c["metric"])
        seeds = sorted({k[0] for k in mb})
        subjects = sorted({k[1:] for k in mb})
        keep = [s for s in subjects if all(not math.isnan(mb[(x, *s)] - mc[(x, *s)]) for x in seeds)]
        diff = np.mean([[sign * (mb[(x, *s)] - mc[(x, *s)]) for s in keep] for x in seeds])
        shown = nums(row[3][0])
        assert close(shown[0], diff), (c["set"], c["metric"], row)
        if c["ci"]:
            assert close(shown[1], c["ci"]["low"]) and close(shown[2], c["ci"]["high"])
        assert p_close(row[4][0], c["p"]) and p_close(row[5][0], c["p_holm"])
        if c["p"] is not None:
            fam = [x for x in tested if x["family"] == c["family"]]
            assert c["family_size"] == len(fam)
            assert abs(c["p_holm"] - holm([x["p"] for x in fam])[fam.index(c)]) < 1e-9
        sig = c["p_holm"] is not None and c["p_holm"] < 0.05
        assert row[5][1] == sig and row[3][1] == sig
        for j, key in ((6, "effect_size"), (7, "mde")):
            assert says_why(row[j][0]) if c[key] is None else close(nums(row[j][0])[0], c[key])
        if c["effect_size"] is None and len(keep) < 3:
            assert row[6][0] == "n/a: < 3 persons"
        assert says_why(row[8][0]) if c["seeds_needed"] is None else row[8][0] == str(c["seeds_needed"])
        assert row[9][0] == f"{len(seeds)} \u00d7 {len(keep)}"


def _paired(results, set_, a, b, metric) -> float:
    """Mean over seeds and persons of a's metric minus b's (positive = a better)."""
    sign = 1 if HIB[metric] else -1
    ma = subject_seed_means(results, set_, a, metric)
    mb = subject_seed_means(results, set_, b, metric)
    seeds = sorted({k[0] for k in ma})
    subjects = sorted({k[1:] for k in ma})
    keep = [s for s in subjects if all(not math.isnan(ma[(x, *s)] - mb[(x, *s)]) for x in seeds)]
    return float(np.mean([[sign * (ma[(x, *s)] - mb[(x, *s)]) for s in keep] for x in seeds]))


def test_comparison_matrix_cells_are_the_paired_differences(summary, results, page):
    check_matrix(summary, results, page)


def test_comparison_matrix_with_two_methods_and_a_test_part(held_out_run):
    summary = json.loads((held_out_run / "summary.json").read_text())
    page = parse_page((held_out_run / "report.html").read_text(encoding="utf-8"))
    assert summary["report_set"] == "test" and len(summary["statistics"]["branches"]) == 2
    assert "matrix-test-pairs" in page.tables
    check_matrix(summary, read_results(held_out_run / "results.csv"), page)


def check_matrix(summary, results, page):
    st = summary["statistics"]
    methods = [b["label"] for b in summary["branches"] if b["kind"] == "ada" and not b["control"]]
    controls = [b["label"] for b in summary["branches"] if b["control"]]
    comps = {(c["branch"], c["control"], c["set"], c["metric"]): c for c in st["comparisons"]}
    panels = [k for k in page.tables if k.startswith("matrix-")]
    primary = st["primary"]["set"]
    first = [f"matrix-{primary}"] + ([f"matrix-{primary}-pairs"] if len(methods) > 1 else [])
    assert panels[: len(first)] == first
    assert sorted(panels[len(first):]) == sorted(f"matrix-{s}" for s in st["sets"] if s != primary)
    checked = 0
    for key in panels:
        t = page.tables[key]
        pairs = key.endswith("-pairs")
        set_ = primary if pairs else key.removeprefix("matrix-")
        metrics = [st["primary"]["metric"]] if pairs else st["metrics"]
        cols = methods if pairs else controls
        assert [r[0][0] for r in t.rows] == methods
        assert [h.removesuffix(" (primary)") for h in t.head_rows[1]] == cols * len(metrics)
        for i, row in enumerate(t.rows):
            a = row[0][0]
            for j, (text, _) in enumerate(row[1:]):
                metric, b = metrics[j // len(cols)], cols[j % len(cols)]
                css = t.classes[i][j + 1]
                if a == b:
                    assert text == "—" and "mx-self" in css
                    continue
                c = comps.get((a, b, set_, metric)) or comps.get((b, a, set_, metric))
                flip = (a, b, set_, metric) not in comps
                if c is None or c["diff"] is None:
                    assert re.fullmatch(r"n/a: \S.*", text) and "mx-na" in css, (key, text)
                    continue
                diff = _paired(results, set_, a, b, metric)
                assert abs(diff - (-c["diff"] if flip else c["diff"])) < 1e-6
                shown = nums(text)
                assert close(shown[0], diff, 1), (key, a, b, metric, text)
                sign = "zero" if round(diff, 1) == 0 else ("pos" if diff > 0 else "neg")
                assert f"mx-{sign}" in css
                if c["ci"] is not None:
                    lo, hi = sorted((-c["ci"]["high"], -c["ci"]["low"]) if flip else (c["ci"]["low"], c["ci"]["high"]))
                    assert close(shown[1], lo, 1) and close(shown[2], hi, 1)
                    if sign != "zero":
                        assert ("mx-strong" in css) == (lo > 0 or hi < 0), (key, text, css)
                else:
                    assert "no interval: " in text
                sig = c["p_holm"] is not None and c["p_holm"] < c["alpha"]
                assert ("\u2605" in text) == sig and ("mx-holm" in css) == sig
                checked += 1
    assert checked >= len(methods) * len(controls) * len(st["sets"])


def test_matrix_stars_a_holm_survivor_and_names_a_missing_control(summary, run, tmp_path):
    from ada_core.report import build_report, render_report

    data = json.loads(json.dumps(summary))
    st = data["statistics"]
    primary = st["primary"]
    first = next(c for c in st["comparisons"] if c["family"] == "primary")
    first.update(p=0.0001, p_holm=0.0002)
    dropped = "none"
    st["comparisons"] = [c for c in st["comparisons"] if c["control"] != dropped]
    st["controls"] = [c for c in st["controls"] if c != dropped]
    for b in data["branches"]:
        if b["label"] == dropped:
            b.update(status="failed", replicates_done=0, note="simulated: out of memory")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "summary.json").write_text(json.dumps(data))
    page = parse_page(render_report(build_report(copy)))
    t = page.tables[f"matrix-{primary['set']}"]
    cols = [h.removesuffix(" (primary)") for h in t.head_rows[1]]
    rows = {r[0][0]: (r, c) for r, c in zip(t.rows, t.classes, strict=True)}
    row, css = rows[first["branch"]]
    j = cols.index(first["control"]) + 1  # the DSC group comes first
    assert "\u2605" in row[j][0] and "mx-holm" in css[j]
    starred = [(k, i) for k, (r, _) in rows.items() for i, cell in enumerate(r) if "\u2605" in cell[0]]
    assert starred == [(first["branch"], j)]
    for label, (r, c) in rows.items():
        for i, name in enumerate(cols, start=1):
            if name == dropped:
                assert r[i][0] == "n/a: none failed (simulated: out of memory)" and "mx-na" in c[i]


def test_matrix_names_a_planted_control_in_its_row(summary, run, tmp_path):
    from ada_core.report import build_report, render_report

    data = json.loads(json.dumps(summary))
    methods = [b for b in data["branches"] if b["kind"] == "ada" and not b["control"]]
    methods[0]["planted"] = True
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "summary.json").write_text(json.dumps(data))
    page = parse_page(render_report(build_report(copy)))
    t = page.tables[f"matrix-{data['statistics']['primary']['set']}"]
    labels = [r[0][0] for r in t.rows]
    assert labels[0] == f"{methods[0]['label']} (planted control)"
    assert labels[1:] == [b["label"] for b in methods[1:]]


def test_convergence_and_iou_tables(summary, page):
    t = page.tables["convergence-table"]
    for rec in summary["convergence"]:
        [row] = [r for r in t.rows if r[0][0] == rec["label"]]
        hits = rec["epochs_to_target"]
        assert row[1][0] == f"{sum(h is not None for h in hits)} of {len(hits)}"
        assert [x.split(": ")[1] for x in row[2][0].split("; ")] == ["never" if h is None else str(h) for h in hits]
        assert close(nums(row[3][0])[0], float(np.mean(rec["mean_dsc"])))
    assert f"{summary['convergence_target']:.2f}" in t.caption
    iou = page.tables["iou-table"]
    for name, row in zip(summary["iou"]["names"], summary["iou"]["matrix"], strict=True):
        [shown] = [r for r in iou.rows if r[0][0] == name]
        assert all(close(float(s[0]), v) for s, v in zip(shown[1:], row, strict=True))


def test_downloads_are_self_contained_csv_and_booktabs_latex(summary, results, page):
    for key, t in page.tables.items():
        if key.startswith("matrix-"):  # its numbers are the comparisons table's, downloadable
            assert not t.links
            continue
        assert set(t.links) == {"CSV", "LaTeX"}, key
        (csv_name, csv_uri), (tex_name, tex_uri) = t.links["CSV"], t.links["LaTeX"]
        assert (csv_name, tex_name) == (f"{key}.csv", f"{key}.tex")
        for uri in (csv_uri, tex_uri):
            assert uri.startswith("data:") and ";base64," in uri
        rows = list(csv.DictReader(io.StringIO(base64.b64decode(csv_uri.split(",", 1)[1]).decode())))
        if key.startswith("estimates-"):
            assert len(rows) == len(t.rows)
            for r in rows:  # full precision, not the rounded display
                mean, _, _ = recompute(results, r["set"], r["branch"], "dsc")
                assert abs(float(r["dsc_mean"]) - mean) < 1e-9
        if key == "comparisons":
            want = {(c["set"], c["metric"], c["branch"], c["control"]): c for c in summary["statistics"]["comparisons"]}
            assert len(rows) == len(want)
            for r in rows:
                c = want[(r["set"], r["metric"], r["branch"], r["control"])]
                assert (r["diff"] == "" and c["diff"] is None) or float(r["diff"]) == c["diff"]
        tex = base64.b64decode(tex_uri.split(",", 1)[1]).decode()
        assert tex.isascii(), key
        lines = tex.splitlines()
        for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}", "\\end{table}"):
            assert rule in lines or any(x.startswith(rule) for x in lines), (key, rule)
        body = lines[lines.index("\\toprule") + 1 : lines.index("\\bottomrule")]
        body.remove("\\midrule")
        assert len(body) == len(t.rows) + 1
        for line in body:
            assert len(re.findall(r"(?<!\\)&", line)) == len(t.header) - 1, line
            assert not re.search(r"(?<!\\)[_%#]", line), line
            assert line.count("$") % 2 == 0 and line.endswith("\\\\"), line


# ------------------------------------------------------------------------------ the page
def test_verdict_opening_then_the_matrix_then_every_set_and_the_forest(summary, page_html):
    from markupsafe import escape  # how Jinja's autoescape writes text

    v = summary["verdict"]
    said = [*v["opening"], *v["caveats"], *(s for d in v["details"] for s in d["sentences"])]
    positions = [page_html.index(str(escape(s))) for s in said]
    assert positions == sorted(positions)
    primary = summary["statistics"]["primary"]["set"]
    assert positions[0] < page_html.index('id="matrix"') < page_html.index(f'id="matrix-{primary}"')
    assert page_html.index(f'id="matrix-{primary}"') < page_html.index('id="fig-forest"') \
        < page_html.index('id="tables"')  # fmt: skip
    # the opening is prose, outside any <details>; each set's sentences in a <details> of its own
    opening = page_html[page_html.index('id="verdict-opening"'):page_html.index("</div>", page_html.index('id="verdict-opening"'))]
    assert all(str(escape(s)) in opening for s in v["opening"]) and "<details" not in opening
    assert 1 <= len(v["opening"]) <= 3
    for d in v["details"]:
        m = re.search(rf'<details data-set="{re.escape(d["set"])}">(.*?)</details>', page_html, re.S)
        assert m, d["set"]
        assert all(str(escape(s)) in m[1] for s in d["sentences"])


def test_ids_are_unique_and_every_link_lands(page_html):
    ids = re.findall(r'\sid="([^"]+)"', page_html)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for target in re.findall(r'href="#([^"]+)"', page_html):
        assert target in ids, target


def test_iou_of_one_method_says_why_without_a_table(run, tmp_path):
    from ada_core.report import build_report, render_report

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    data = json.loads((copy / "summary.json").read_text())
    assert data["iou"] is None or len(data["iou"]["names"]) >= 1
    data["iou"] = {"names": ["gradcam"], "matrix": [[1.0]], "n_replicates": 2, "n_images": 4}
    (copy / "summary.json").write_text(json.dumps(data))
    text = render_report(build_report(copy))
    section = text[text.index('<section id="iou">'):text.index('<section id="positions">')]
    assert "no IoU matrix" not in section and 'data-key="iou-table"' not in section
    assert "at least two ADA branches; summary.json holds those of one (gradcam)" in section
    from ada_core.engine.text import format_summary
    from ada_core.runfolder import read_summary

    assert "erased-region IoU" not in format_summary(read_summary(copy))
    data["iou"] = None
    (copy / "summary.json").write_text(json.dumps(data))
    text = render_report(build_report(copy))
    section = text[text.index('<section id="iou">'):text.index('<section id="positions">')]
    assert "summary.json has no IoU matrix" in section and 'data-key="iou-table"' not in section


def test_a_study_without_a_control_says_so_as_a_plan(run, tmp_path):
    from ada_core.report import build_report, render_report

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    data = json.loads((copy / "summary.json").read_text())
    data["statistics"] = None
    data["branches"] = [{**b, "control": False, "kind": "ada" if b["kind"] == "control" else b["kind"]}
                        for b in data["branches"]]  # fmt: skip
    (copy / "summary.json").write_text(json.dumps(data))
    text = render_report(build_report(copy))
    assert "No comparison matrix: the study plans no control branch" in text
    assert "finished" not in text[text.index('id="matrix"'):text.index('id="sets"')]


def test_every_n_a_on_the_page_says_why_in_place(page):
    seen = 0
    for key, t in page.tables.items():
        for row in t.rows:
            for text, _ in row:
                for hit in re.finditer(r"n/a", text):
                    seen += 1
                    assert re.match(r"n/a: \S", text[hit.start():]), (key, text)
    assert seen  # the tiny study has untested comparisons (2 persons: no d_z)


def test_page_is_self_contained_and_every_image_is_a_png(page, page_html):
    from PIL import Image

    assert page.scripts == 0
    assert all(u.startswith(("data:", "#")) for u in page.urls), [u[:60] for u in page.urls if not u.startswith(("data:", "#"))]
    assert len(page.images) >= 6
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and min(im.size) > 100
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page_html)


def test_provenance_and_config(summary, page_html, run):
    prov = summary["provenance"]
    for name, version in prov["versions"].items():
        assert f"<dt>{html.escape(name)}</dt><dd>{html.escape(version)}</dd>" in page_html
    for value in (prov["ada_version"], prov["device"], prov["created"], prov["git_commit"] or "none"):
        assert html.escape(value) in page_html
    assert f"<dt>seeds</dt><dd>{', '.join(map(str, summary['seeds']))}</dd>" in page_html
    threads = json.loads((run / "config.json").read_text())["train"]["threads"]
    assert prov["threads"] and set(prov["threads"]) == {threads}
    assert f"<dt>torch threads</dt><dd>{', '.join(map(str, prov['threads']))}</dd>" in page_html
    m = re.search(r"<details><summary>[^<]*config\.toml[^<]*</summary><pre>(.*?)</pre></details>", page_html, re.S)
    assert m and html.unescape(m[1]) == (run / "config.toml").read_text()
    tomllib.loads(html.unescape(m[1]))


# ------------------------------------------------------------------------------ partial runs
def test_failed_branch_gives_a_partial_report(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    folder = copy / "seed-1" / "branches" / "random"
    key = json.loads((folder / "key.json").read_text())["key"]
    (folder / "failed.json").write_text(json.dumps({"key": key, "error": "simulated: out of memory",
                                                    "where": "training", "time": "now"}))
    assert main(["aggregate", str(copy)]) == 3  # EXIT_FAILED_JOBS; the report is still written
    summary = json.loads((copy / "summary.json").read_text())
    text = (copy / "report.html").read_text()
    page = parse_page(text)
    assert "Partial report:" in text and summary["missing"]
    for line in summary["missing"]:
        assert html.escape(line, quote=False) in text
    [row] = [r for r in page.tables["branches"].rows if r[0][0] == "random"]
    assert [c[0] for c in row[3:5]] == ["partial", "1 of 2"] and row[3][1]
    assert "simulated: out of memory" in row[5][0]
    assert 'id="fig-convergence"' in text and 'id="fig-forest"' in text


def test_unreadable_job_files_are_named_and_left_out(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    jobs = json.loads((copy / "summary.json").read_text())["jobs"]
    job = next(j for j in jobs if j["label"] == "gradcam" and j["seed"] == 0)
    (copy / job["path"] / "samples.pt").write_bytes(b"not a torch file")
    with (copy / job["path"] / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 99, "metr')  # a job killed while writing its log
    text = write_report(copy).read_text()
    status = text[text.index('id="missing"') :]
    assert html.escape(str(copy / job["path"] / "samples.pt")) in status
    assert html.escape(str(copy / job["path"] / "metrics.jsonl")) + ": line" in status
    assert 'id="fig-samples-1"' in text and "of seed 1" in text  # the other replicate's samples


def test_no_summary_is_a_clear_data_error(tmp_path, capsys):
    with pytest.raises(DataError, match=re.escape(str(tmp_path)) + ".*no summary.json.*ada compare"):
        write_report(tmp_path)
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(DataError, match=re.escape(f"ada aggregate {tmp_path}")):
        write_report(tmp_path)
    with pytest.raises(DataError, match="no such run folder"):
        write_report(tmp_path / "absent")
    assert main(["report", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------ units
def test_latex_escape_hand_cases():
    assert latex_escape(r"a_b & 50% $x #1 {y} ~ ^ \ <>") == (
        r"a\_b \& 50\% \$x \#1 \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"\textless{}\textgreater{}")  # fmt: skip
    assert latex_escape("\u22121.5 \u00d7 2, \u0394DSC \u00b1 1 \u2013 2") == "$-$1.5 $\\times$ 2, $\\Delta$DSC $\\pm$ 1 -- 2"


def test_templates_ship_in_the_wheel():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["ada_core.report"]
    templates = resources.files("ada_core.report") / "templates"
    files = [p.name for p in templates.iterdir() if p.is_file()]
    assert "report.html.j2" in files
    assert all(any(fnmatch.fnmatch(f"templates/{f}", g) for g in globs) for f in files)
    assert any(d.lower().startswith("jinja2") for d in data["project"]["dependencies"])


def _person_seed_means(results, set_, branch) -> dict:
    """(fold, person) -> {seed: the person's mean over its scans of their slice-mean DSC}."""
    acc = defaultdict(lambda: defaultdict(list))
    for x in results:
        if x["set"] == set_ and x["branch"] == branch and not math.isnan(x["dsc"]):
            acc[(x["fold"], x["person"], x["seed"])][x["subject"]].append(x["dsc"])
    out = defaultdict(dict)
    for (fold, person, seed), subjects in acc.items():
        out[(fold, person)][seed] = float(np.mean([np.mean(v) for v in subjects.values()]))
    return out


def test_persons_table_names_every_person_with_its_part(summary, page):
    t = page.tables["persons"]
    assert t.header[:6] == ["person", "site", "fold", "part", "scans", "slices"]
    shown = {(r[0][0], r[3][0]) for r in t.rows}
    want = {(p["person"], part) for parts in summary["persons"].values()
            for part, found in parts.items() for p in found}
    assert shown == want and want
    sites = {p["person"]: ", ".join(p["sites"]) for parts in summary["persons"].values()
             for found in parts.values() for p in found}
    assert all(r[1][0] == sites[r[0][0]] for r in t.rows)


def test_heatmap_is_each_person_by_branch_mean_and_sd_over_seeds(summary, results, page, page_html):
    t = page.tables["person-heatmap"]
    set_ = summary["report_set"]
    branches = [h for h in t.header[2:-1]]
    assert {"gradcam", "random", "none", "standard"} <= set(branches)
    persons = {p["person"] for parts in summary["persons"].values() for p in parts.get(set_, [])}
    assert {r[0][0] for r in t.rows} == persons and persons
    means, n_seeds = {}, set()
    for j, b in enumerate(branches, start=2):
        per = _person_seed_means(results, set_, b)
        for r in t.rows:
            [key] = [k for k in per if k[1] == r[0][0]]
            seeds = list(per[key].values())
            shown = nums(r[j][0])
            assert close(shown[0], float(np.mean(seeds)), 1), (b, r)
            assert close(shown[1], float(np.std(seeds, ddof=1)), 1), (b, r)
            n_seeds.add(len(seeds))
            assert f"(n = {len(seeds)})" in r[j][0] or f"the mean over {len(seeds)} seeds" in t.caption
            means[(r[0][0], b)] = float(np.mean(seeds))
    assert n_seeds == {len(summary["seeds"])}
    # the shade is one sequential scale: a higher DSC is never lighter
    body = page_html[page_html.index('data-key="person-heatmap"'):]
    body = body[: body.index("</table>")]
    shades = re.findall(r'<td class="num[^"]*"[^>]*style="background: (#[0-9a-f]{6})">(?:<strong>)?([0-9.]+)', body)
    assert len(shades) == len(means)

    def lum(h):
        return sum(w * int(h[i:i + 2], 16) for w, i in ((0.299, 1), (0.587, 3), (0.114, 5)))

    pairs = sorted((float(v), lum(h)) for h, v in shades)
    assert all(a[1] >= b[1] - 1e-9 for a, b in zip(pairs, pairs[1:]))
    assert pairs[0][1] > pairs[-1][1] or pairs[0][0] == pairs[-1][0]


def test_a_failing_person_is_flagged_in_both_tables(summary):
    from ada_core.report.persons import person_heatmap, persons_table
    from ada_core.runfolder import RunSummary

    s = RunSummary.model_validate(summary)
    victim = s.person_scores[0].person
    flagged = s.model_copy(update={"person_scores": [sc.model_copy(update={"failing": sc.person == victim})
                                                     for sc in s.person_scores]})  # fmt: skip
    for table in (persons_table(flagged), person_heatmap(flagged)):
        for row in table.rows:
            bad = row[0].text == victim
            assert row[0].strong == bad and (row[-1].text == "fails in every branch") == bad
        assert any(row[0].text == victim for row in table.rows)
    for table in (persons_table(s), person_heatmap(s)):  # the fixture's persons do not fail
        assert not any(row[-1].text for row in table.rows) or any(sc.failing for sc in s.person_scores)


def test_without_the_primary_sets_comparisons_the_next_set_goes_next_to_the_verdict(summary):
    from ada_core.report.matrix import comparison_matrix
    from ada_core.runfolder import RunSummary

    s = RunSummary.model_validate(summary)
    primary = s.statistics.primary.set
    st = s.statistics.model_copy(update={"primary": None, "comparisons": tuple(
        c for c in s.statistics.comparisons if c.set != primary)})  # fmt: skip
    panels = comparison_matrix(s.model_copy(update={"statistics": st}))
    want = [x for x in s.statistics.sets if x != primary]
    assert [p.key for p in panels] == [f"matrix-{x}" for x in want]
    assert [p.primary for p in panels] == [True] + [False] * (len(want) - 1)
