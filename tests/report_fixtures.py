"""A tiny real study for the report tests, run once per session through the CLI, its
fixtures, and a parser that reads report.html back as a reader would (tables as text, links,
images)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ada_core.report import build_report

CONFIG = """\
name = "tiny"
output = "{output}"
[data]
name = "phantom"
[data.params]
n_subjects = 6
slices_per_subject = 2
size = [48, 48]
spacing = 0.5
sites = 2
context_cue = true
seed = 1
[data.preprocess]
spacing = 0.5
size = [24, 24]
[data.split]
val_fraction = 0.34
seed = 0
[model]
name = "unet-paper"
[model.params]
width = 4
depth = 2
dropout = 0.1
[[attributors]]
name = "gradcam"
[[attributors]]
name = "random"
[[attributors]]
name = "none"
[mask]
name = "window"
[mask.params]
size = 6
[train]
standard_epochs = 2
cycles = 2
ada_epochs = 1
batch_size = 8
lr = 0.003
eval_batch_size = 32
robustness_size = 8
seeds = [0, 1]
device = "cpu"
threads = 1
"""


@cache
def study(root: Path) -> Path:
    """Run the 2-seed study under ``root`` once (``ada compare``) and return its run folder."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "tiny.toml"
    cfg.write_text(CONFIG.format(output=root / "runs"))
    # One intra-op thread: on a shared 2-core machine torch's default threads oversubscribe
    # the cores and the same study takes about five times as long.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ada_core.cli", "compare", str(cfg), "--quiet"],
                         capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"ada compare failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return root / "runs" / "tiny"


@cache
def held_out_study(root: Path) -> Path:
    """A 2-seed study with a held-out test part (2 persons), two methods and both controls,
    as ``make demo`` has them (``ada compare``); its run folder."""
    from studykit import ada_cli, tiny_config, write_config

    root.mkdir(parents=True, exist_ok=True)
    config = tiny_config(root / "runs", name="tiny-test", test=True, seeds=[0, 1], attributors=[
        {"name": "gradcam"}, {"name": "vanilla"}, {"name": "random"}, {"name": "none"}])  # fmt: skip
    path = write_config(config, root / "tiny-test.toml")
    out = ada_cli("compare", str(path), "--quiet", env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"ada compare failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return root / "runs" / "tiny-test"


# ---------------------------------------------------------------------------- fixtures
# Imported by the report test modules; `study` is cached, so the study runs once a session.
@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    return study(tmp_path_factory.getbasetemp() / "report-study")


@pytest.fixture(scope="session")
def held_out_run(tmp_path_factory) -> Path:
    return held_out_study(tmp_path_factory.getbasetemp() / "report-test-study")


@pytest.fixture(scope="session")
def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="session")
def results(run) -> list[dict]:
    return read_results(run / "results.csv")


@pytest.fixture(scope="session")
def page_html(run) -> str:
    return (run / "report.html").read_text(encoding="utf-8")  # written by `ada compare`


@pytest.fixture(scope="session")
def page(page_html):
    return parse_page(page_html)


@pytest.fixture(scope="session")
def report(run):
    return build_report(run)


# ---------------------------------------------------------------------------- tidy table
def read_results(path: Path) -> list[dict]:
    """results.csv as dicts with floats (NaN for empty) and int seeds."""
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            for k in ("dsc", "hsd", "hd95", "hd95_monai", "tpr", "tnr", "ppv", "fail"):
                r[k] = float(r[k]) if r[k] not in ("", "nan", "NaN") else math.nan
            r["seed"] = int(r["seed"])
            rows.append(r)
    return rows


def subject_seed_means(rows: list[dict], set_: str, branch: str, metric: str) -> dict:
    """(seed, fold, subject) -> mean of the defined slice values (NaN when none is)."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["set"] == set_ and r["branch"] == branch:
            acc[(r["seed"], r["fold"], r["subject"])].append(r[metric])
    out = {}
    for k, vs in acc.items():
        ok = [v for v in vs if not math.isnan(v)]
        out[k] = sum(ok) / len(ok) if ok else math.nan
    return out


# ---------------------------------------------------------------------------- the page
@dataclass
class PageTable:
    key: str
    header: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, bool]]] = field(default_factory=list)
    head_rows: list[list[str]] = field(default_factory=list)  # every row of <thead>
    classes: list[list[str]] = field(default_factory=list)  # per body row, each cell's class
    caption: str = ""
    links: dict[str, tuple[str, str]] = field(default_factory=dict)  # text -> (download, href)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, PageTable] = {}
        self.images: list[str] = []
        self.scripts = 0
        self.urls: list[str] = []
        self._t: PageTable | None = None
        self._last: PageTable | None = None
        self._cell: list[str] | None = None
        self._strong = False
        self._in: str | None = None
        self._link: tuple[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if k in a:
                self.urls.append(a[k])
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._t = PageTable(a["data-key"])
            self._head = False
        elif self._t is not None and tag == "thead":
            self._head = True
        elif self._t is not None and tag == "tr":
            self._row: list[tuple[str, bool]] = []
            self._classes: list[str] = []
        elif self._t is not None and tag in ("td", "th"):
            self._cell, self._strong = [], False
            self._classes.append(a.get("class") or "")
        elif self._cell is not None and tag == "strong":
            self._strong = True
        elif tag == "p" and self._last is not None and a.get("class") in ("caption", "downloads"):
            self._in, self._text = a["class"], []
        elif tag == "a" and self._in == "downloads":
            self._link, self._text = (a.get("download", ""), a.get("href", "")), []

    def handle_endtag(self, tag):
        if self._t is not None and tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            self._row.append((text, self._strong))
            self._cell = None
        elif self._t is not None and tag == "thead":
            self._head = False
        elif self._t is not None and tag == "tr":
            if self._row and all(c is not None for c in self._row):
                if self._head:
                    self._t.head_rows.append([c[0] for c in self._row])
                    self._t.header = self._t.head_rows[-1]
                else:
                    self._t.rows.append(self._row)
                    self._t.classes.append(self._classes)
        elif tag == "table" and self._t is not None:
            self.tables[self._t.key] = self._last = self._t
            self._t = None
        elif tag == "a" and self._link is not None:
            self._last.links["".join(self._text).strip()] = self._link
            self._link = None
        elif tag == "p" and self._in:
            if self._in == "caption":
                self._last.caption = " ".join("".join(self._text).split())
            self._in = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in or self._link:
            self._text.append(data)


def parse_page(html: str) -> _Parser:
    """Tables (header, rows of (text, bold)), captions, download links and images of a page."""
    p = _Parser()
    p.feed(html)
    return p
