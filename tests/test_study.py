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


def _person_means(rows, branch, set_, metric):
    """{seed: {person: mean over its subjects of the subject's defined slice values}}."""
    acc: dict[int, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r["branch"] == branch and r["set"] == set_ and r[metric] != "":
            acc[int(r["seed"])][r["person"]][r["subject"]].append(float(r[metric]))
    return {s: {p: float(np.mean([np.mean(v) for v in subj.values()])) for p, subj in per.items()}
            for s, per in acc.items()}


def _matrix(rows, branch, set_, metric):
    """seeds x persons."""
    means = _person_means(rows, branch, set_, metric)
    seeds = sorted(means)
    persons = sorted(means[seeds[0]])
    return np.array([[means[s][j] for j in persons] for s in seeds])


def _crossed_t(d: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, SE, df, p) of the crossed random-effects t test of docs/statistics.md."""
    s, n = d.shape
    m = d.mean()
    row, col = d.mean(1), d.mean(0)
    ms_seed = n * ((row - m) ** 2).sum() / (s - 1)
    ms_person = s * ((col - m) ** 2).sum() / (n - 1)
    ms_res = ((d - row[:, None] - col[None, :] + m) ** 2).sum() / ((s - 1) * (n - 1))
    terms = [(ms_seed, s - 1, 1.0)]  # the seed mean square is always kept
    if ms_person > ms_res:
        terms += [(ms_person, n - 1, 1.0), (ms_res, (s - 1) * (n - 1), -1.0)]
    v = sum(c * ms for ms, _, c in terms)
    se = np.sqrt(v / (s * n))
    df = max(s - 1, v**2 / sum((c * ms) ** 2 / k for ms, k, c in terms) - 0.5)
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
                                       "site", "slice", "dsc", "hsd", "hd95", "tpr", "tnr", "ppv",
                                       "hd95_monai", "fail"]  # fmt: skip


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
        assert (c["ci"]["low"], c["ci"]["high"]) == pytest.approx(
            (max(-100, m - half), min(100, m + half)), rel=1e-9)
        checked += 1
    assert checked >= 4
    # Holm within each family, by hand
    for family in ("primary", "pairs", "secondary"):
        fam = [c for c in stats["comparisons"] if c["family"] == family]
        ps = [c["p"] for c in fam]
        order = np.argsort([np.inf if p is None else p for p in ps])
        k = sum(p is not None for p in ps)
        running = 0.0
        for rank, i in enumerate(order[:k]):
            running = max(running, min(1.0, (k - rank) * ps[i]))
            assert fam[i]["p_holm"] == pytest.approx(running, rel=1e-9)
    assert {c["family"] for c in stats["comparisons"]} == {"primary", "pairs", "secondary"}
    # an estimate is the mean over seeds and persons, inside 0-100
    for e in stats["estimates"]:
        if (e["set"], e["metric"]) != ("test", "dsc"):
            continue
        assert e["mean"] == pytest.approx(_matrix(rows, e["branch"], "test", "dsc").mean(), abs=1e-9)
        if e["ci"]:
            assert 0 <= e["ci"]["low"] <= e["mean"] <= e["ci"]["high"] <= 100


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def test_the_verdict_quotes_the_recomputed_numbers(tiny_study):
    run, proc = tiny_study
    summary = json.loads((run / "summary.json").read_text())
    rows = read_results(run)
    head = summary["verdict"]["opening"][0]
    assert head.startswith("Primary question, DSC on the held-out test persons"), head
    found = re.search(r"random erasing \(random\) beyond chance \(closest: (\w+) "
                      r"([+\u2212]?[\d.]+) points, 95% CI ([+\u2212]?[\d.]+) to "
                      r"([+\u2212]?[\d.]+)", head)  # fmt: skip
    assert found, head
    branch = found[1]
    d = _matrix(rows, branch, "test", "dsc") - _matrix(rows, "random", "test", "dsc")
    methods = ["gradcam", "vanilla"]
    ps = {b: _crossed_t(_matrix(rows, b, "test", "dsc") - _matrix(rows, "random", "test", "dsc"))[3]
          for b in methods}  # fmt: skip
    assert branch == min(ps, key=ps.get)  # the closest: the smallest p
    m, se, df, _ = _crossed_t(d)
    half = sps.t.ppf(0.975, df) * se
    digits = 2 if 2 * half < 1 else 1
    tol = 0.5 * 10**-digits + 1e-9
    for text, value in zip(found.groups()[1:], (m, m - half, m + half)):
        assert abs(_number(text) - value) <= tol, (text, value)
    assert head in proc.stdout and "Verdict" in (run / "summary.txt").read_text()


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


def test_one_seed_describes_and_claims_nothing(tmp_path):
    data = tiny_config(tmp_path, "one", attributors=["vanilla", "random"], test=True,
                       standard_epochs=1, cycles=1, ada_epochs=1, robustness=False)  # fmt: skip
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    summary = json.loads((run / "summary.json").read_text())
    v = summary["verdict"]
    assert "describes and does not decide" in v["opening"][0]
    assert any(c.startswith("Only 1 seed (0)") for c in v["caveats"])
    said = " ".join([*v["opening"], *v["caveats"], *(x for d in v["details"] for x in d["sentences"])])
    assert "beats" not in said and "is worse than" not in said and "survive" not in said
    assert {e["design"] for e in summary["statistics"]["estimates"]} == {"persons"}
    assert all(c["p"] is None for c in summary["statistics"]["comparisons"])


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


def test_train_threads_hold_while_training_and_are_recorded(tmp_path):
    """train.threads is torch's thread count in the process that trains (seen by an observer
    during each epoch), recorded in done.json and the provenance, and the caller's is restored."""
    seen: list[int] = []

    class Threads:
        def on_epoch(self, record):
            seen.append(torch.get_num_threads())

        def on_end(self, job):
            pass

    data = tiny_config(tmp_path, "threads", attributors=["none"], standard_epochs=1, cycles=1,
                       ada_epochs=1, robustness=False, threads=1)  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        run = run_study(parse_config(data), load_plugins(), quiet=True,
                        observe=lambda job: Threads()).run_dir  # fmt: skip
        assert torch.get_num_threads() == 3  # the caller's again
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}
    for done in run.rglob("done.json"):
        assert json.loads(done.read_text())["threads"] == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["provenance"]["threads"] == [1]
    key = json.loads((run / "seed-0" / "standard" / "key.json").read_text())
    assert key["settings"]["settings"]["train"]["threads"] == 1  # part of every job's key
