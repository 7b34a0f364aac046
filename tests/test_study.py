"""The study (issue 11): seeds, a held-out test part, the tidy table, statistics, the verdict.

The statistics are recomputed here from results.csv with numpy and scipy.stats, following
docs/statistics.md (two-way ANOVA of the seeds x subjects differences, Satterthwaite t), not
by calling ada_core.stats.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

from conftest import STUDY_SEEDS
from studykit import read_results, tiny_config

from ada_core.config import parse_config
from ada_core.engine import run_study
from studykit import load_pt as load_checkpoint
from ada_core.errors import ConfigError
from ada_core.plugins import load_plugins

BRANCHES = ["gradcam", "vanilla", "random", "none", "none_twin"]


def _subject_means(rows, branch, set_, metric):
    """{seed: {subject: mean over the slices with a defined value}}."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["branch"] == branch and r["set"] == set_ and r[metric] != "":
            acc[int(r["seed"])][r["subject"]].append(float(r[metric]))
    return {s: {j: float(np.mean(v)) for j, v in subj.items()} for s, subj in acc.items()}


def _matrix(rows, branch, set_, metric):
    means = _subject_means(rows, branch, set_, metric)
    seeds = sorted(means)
    subjects = sorted(means[seeds[0]])
    return np.array([[means[s][j] for j in subjects] for s in seeds])


def _crossed_t(d: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, SE, df, p) of the crossed random-effects t test of docs/statistics.md."""
    s, n = d.shape
    m = d.mean()
    row, col = d.mean(1), d.mean(0)
    ms_seed = n * ((row - m) ** 2).sum() / (s - 1)
    ms_subj = s * ((col - m) ** 2).sum() / (n - 1)
    ms_res = ((d - row[:, None] - col[None, :] + m) ** 2).sum() / ((s - 1) * (n - 1))
    terms = [(ms_res, (s - 1) * (n - 1), 1.0)]
    if ms_seed > ms_res:
        terms += [(ms_seed, s - 1, 1.0)]
    if ms_subj > ms_res:
        terms += [(ms_subj, n - 1, 1.0)]
    if len(terms) == 3:
        terms[0] = (ms_res, (s - 1) * (n - 1), -1.0)
    elif len(terms) == 2:
        terms = terms[1:]  # the residual is absorbed: V = MS of the one positive component
    v = sum(c * ms for ms, _, c in terms)
    se = np.sqrt(v / (s * n))
    df = v**2 / sum((c * ms) ** 2 / k for ms, k, c in terms)
    p = 2 * sps.t.sf(abs(m / se), df)
    return float(m), float(se), float(df), float(p)


def test_a_folder_per_seed_and_the_tidy_table_has_every_row(tiny_study):
    run, _ = tiny_study
    for seed in STUDY_SEEDS:
        assert (run / f"seed-{seed}" / "standard" / "done.json").is_file()
    study = json.loads((run / "study.json").read_text())
    n = study["slices"][""]
    v, t = n["val"], n["test"]
    persons = {part: {p["person"] for p in found} for part, found in study["persons"][""].items()}
    assert v and t and persons["test"] and not persons["test"] & persons["val"]
    rows = read_results(run)
    # per seed: every phase on val, test and 3 test-based sets; branches also val@ada2
    expected = len(STUDY_SEEDS) * ((1 + len(BRANCHES)) * (v + 4 * t) + len(BRANCHES) * v)
    assert len(rows) == expected
    sets = {r["set"] for r in rows}
    assert sets == {"val", "test", "robustness", "robustness_near", "context", "val@ada2"}
    keys = [(r["seed"], r["branch"], r["set"], r["subject"], r["slice"]) for r in rows]
    assert len(set(keys)) == len(keys)
    with open(run / "results.csv", newline="") as f:  # pandas-free: the header is the schema
        assert next(csv.reader(f)) == ["seed", "fold", "branch", "set", "person", "subject",
                                       "site", "slice", "dsc", "hsd", "hd95", "tpr", "tnr", "ppv"]  # fmt: skip


def test_random_erases_different_windows_in_different_seeds(tiny_study):
    run, _ = tiny_study
    keeps = [load_checkpoint(run / f"seed-{s}" / "branches" / "random" / "cycle1.pt")["keep"]
             for s in STUDY_SEEDS]  # fmt: skip
    assert not torch.equal(keeps[0], keeps[1])


def test_random_with_an_explicit_seed_erases_the_same_windows_in_every_seed(tmp_path):
    """The reference for the test above: the same stream in both seeds gives equal windows."""
    data = tiny_config(tmp_path, "fixed", attributors=[{"name": "random", "params": {"seed": 5}}],
                       seeds=[0, 1], standard_epochs=0, cycles=1, ada_epochs=1, robustness=False)  # fmt: skip
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    keeps = [load_checkpoint(run / f"seed-{s}" / "branches" / "random" / "cycle1.pt")["keep"]
             for s in (0, 1)]  # fmt: skip
    assert torch.equal(keeps[0], keeps[1])


def test_intervals_and_tests_equal_a_recomputation_with_scipy(tiny_study):
    run, _ = tiny_study
    rows = read_results(run)
    summary = json.loads((run / "summary.json").read_text())
    stats = summary["statistics"]
    checked = 0
    for c in stats["comparisons"]:
        if c["metric"] != "dsc" or c["set"] not in ("test", "robustness"):
            continue
        d = _matrix(rows, c["branch"], c["set"], "dsc") - _matrix(rows, c["control"], c["set"], "dsc")
        assert c["diff"] == pytest.approx(d.mean(), abs=1e-9)
        if np.allclose(d, d.mean()):
            continue  # no variance: no test (the summary says so in its note)
        m, se, df, p = _crossed_t(d)
        assert c["se"] == pytest.approx(se, rel=1e-9) and c["df"] == pytest.approx(df, rel=1e-9)
        assert c["p"] == pytest.approx(p, rel=1e-9)
        half = sps.t.ppf(0.975, df) * se
        assert (c["ci"]["low"], c["ci"]["high"]) == pytest.approx((m - half, m + half), rel=1e-9)
        checked += 1
    assert checked >= 4
    # Holm over the whole family, by hand
    ps = [c["p"] for c in stats["comparisons"]]
    order = np.argsort([np.inf if p is None else p for p in ps])
    k = sum(p is not None for p in ps)
    running = 0.0
    for rank, i in enumerate(order[:k]):
        running = max(running, min(1.0, (k - rank) * ps[i]))
        assert stats["comparisons"][i]["p_holm"] == pytest.approx(running, rel=1e-9)
    # an estimate's t interval over the seed means
    for e in stats["estimates"]:
        if (e["set"], e["metric"]) != ("test", "dsc"):
            continue
        seed_means = _matrix(rows, e["branch"], "test", "dsc").mean(1)
        assert e["mean"] == pytest.approx(seed_means.mean(), abs=1e-9)
        lo, hi = sps.t.interval(0.95, len(seed_means) - 1, seed_means.mean(), sps.sem(seed_means))
        if np.isfinite(lo):
            assert (e["ci_t"]["low"], e["ci_t"]["high"]) == pytest.approx((lo, hi), rel=1e-9)


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def test_the_verdict_quotes_the_recomputed_numbers(tiny_study):
    run, proc = tiny_study
    summary = json.loads((run / "summary.json").read_text())
    rows = read_results(run)
    sentences = [s for s in summary["verdict"] if "random erasing" in s and "on test DSC beyond" in s]
    assert sentences, summary["verdict"]
    found = re.search(r"largest: (\w+) ([+\u2212]?[\d.]+) points, 95% CI ([+\u2212]?[\d.]+) to "
                      r"([+\u2212]?[\d.]+)", sentences[0])  # fmt: skip
    assert found, sentences[0]
    branch = found[1]
    d = _matrix(rows, branch, "test", "dsc") - _matrix(rows, "random", "test", "dsc")
    methods = ["gradcam", "vanilla"]
    diffs = {b: (_matrix(rows, b, "test", "dsc") - _matrix(rows, "random", "test", "dsc")).mean()
             for b in methods}  # fmt: skip
    assert branch == max(diffs, key=diffs.get)
    m, se, df, _ = _crossed_t(d)
    half = sps.t.ppf(0.975, df) * se
    digits = 2 if 2 * half < 1 else 1
    tol = 0.5 * 10**-digits + 1e-9
    for text, value in zip(found.groups()[1:], (m, m - half, m + half)):
        assert abs(_number(text) - value) <= tol, (text, value)
    assert summary["verdict"][0] in proc.stdout and "Verdict" in (run / "summary.txt").read_text()


def test_adding_a_seed_runs_only_the_new_seed(tiny_study, tmp_path, capsys):
    src, _ = tiny_study
    run = tmp_path / "tiny"
    shutil.copytree(src, run, copy_function=shutil.copy2)
    before = {p: p.stat().st_mtime_ns for p in (run / "seed-0").rglob("*") if p.is_file()}
    config = json.loads((run / "config.json").read_text())
    config["output"] = str(tmp_path)
    config["train"]["seeds"] = [*STUDY_SEEDS, 2]
    run_study(parse_config(config), load_plugins(), quiet=True)
    out = capsys.readouterr().out
    assert out.count("reusing the finished job") == 2 * (1 + len(BRANCHES))
    assert before == {p: p.stat().st_mtime_ns for p in (run / "seed-0").rglob("*") if p.is_file()}
    assert (run / "seed-2" / "branches" / "gradcam" / "done.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["statistics"]["seeds"] == [0, 1, 2]
    assert {r["seed"] for r in read_results(run)} == {"0", "1", "2"}


def test_one_seed_says_its_intervals_are_over_subjects_only(tmp_path):
    data = tiny_config(tmp_path, "one", attributors=["vanilla", "random"], test=True,
                       standard_epochs=1, cycles=1, ada_epochs=1, robustness=False)  # fmt: skip
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"][0].startswith("Only 1 seed (0)")
    assert {e["interval"] for e in summary["statistics"]["estimates"]} == {"subjects only (1 seed)"}


def test_leave_one_site_out_folds(tmp_path):
    data = tiny_config(tmp_path, "loso", attributors=["vanilla", "none"], standard_epochs=1,
                       cycles=1, ada_epochs=1, robustness=False)  # fmt: skip
    data["data"]["params"]["n_subjects"] = 6
    data["data"]["split"] = {"test": "loso", "val_fraction": 0.34}
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    study = json.loads((run / "study.json").read_text())
    assert study["folds"] == ["site-site0", "site-site1"]
    rows = read_results(run)
    for fold in study["folds"]:
        assert (run / fold / "seed-0" / "branches" / "vanilla" / "done.json").is_file()
        test_sites = {r["site"] for r in rows if r["fold"] == fold and r["set"] == "test"}
        assert test_sites == {fold.removeprefix("site-")}
    tested = [r["subject"] for r in rows if r["set"] == "test" and r["branch"] == "vanilla"]
    per_fold = {f: {r["subject"] for r in rows if r["set"] == "test" and r["fold"] == f} for f in study["folds"]}
    assert not (per_fold["site-site0"] & per_fold["site-site1"]) and len(set(tested)) == 6


def test_split_and_schedule_errors_are_clear(tmp_path):
    data = tiny_config(tmp_path, "bad", attributors=["vanilla"])
    data["data"]["split"] = {"test": "subjects", "test_subjects": ["phantom-000", "phantom-001", "phantom-002",
                                                                   "phantom-003", "phantom-004"]}  # fmt: skip
    with pytest.raises(Exception, match=r"data\.split"):
        run_study(parse_config(data), load_plugins(), quiet=True)
    with pytest.raises(ConfigError, match="seeds must be unique"):
        parse_config(tiny_config(tmp_path, seeds=[3, 3]))
    assert not Path(tmp_path / "bad" / "seed-0").exists()
