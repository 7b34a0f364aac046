"""report.html in headless Chromium: no console error, no request leaving the page; on the
first 1280 x 800 screen the verdict's opening and the primary set's comparison matrix; every
test person's name in a table.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (stdlib only,
tests/cdp_pipe.py). Skipped, with the install command, where Chromium is not installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cdp_pipe import Browser, find_chromium
from report_fixtures import study, held_out_study

WIDTH, HEIGHT = 1280, 800
INSTALL = "apt-get update && apt-get install -y chromium"

# Positions in CSS pixels of the loaded page, measured by the browser's own layout.
_LAYOUT = """(() => {
  const box = q => { const e = document.querySelector(q); if (!e) return null;
                     const r = e.getBoundingClientRect();
                     return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const forest = document.querySelector('#fig-forest img');
  return JSON.stringify({
    verdict: box('#verdict'), opening: box('#verdict-opening'),
    matrix: box('#matrix .mx table'), panel: box('#matrix .mx'),
    details: [...document.querySelectorAll('#verdict details')].map(d => d.open),
    forest_scale: forest ? forest.getBoundingClientRect().width / forest.naturalWidth : null,
    table_text: [...document.querySelectorAll('table')].map(t => t.innerText).join('\\n'),
    page_width: document.documentElement.scrollWidth,
    scrolled: [...document.querySelectorAll('.mx .scroll')].filter(e => e.scrollWidth > e.clientWidth + 1)
              .map(e => e.parentElement.id),
    width: innerWidth, height: innerHeight,
    images: [...document.images].map(i => [i.complete, i.naturalWidth]),
  });
})()"""


@dataclass
class PageCheck:
    errors: list[str]
    external: list[str]
    layout: dict


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(f"Chromium is not installed (install it with: {INSTALL}; see docs/report.md)")
    return binary


def load(binary: str, profile: Path, page: Path) -> PageCheck:
    """Open ``page`` in a fresh profile; collect console errors and non-local requests."""
    profile.mkdir(parents=True)
    url = page.resolve().as_uri()
    b = Browser(binary, profile, WIDTH, HEIGHT)
    try:
        b.call("Page.navigate", session=True, url=url)
        b.wait_for("Page.loadEventFired")
        layout = json.loads(b.evaluate(_LAYOUT))
        b.evaluate("1")  # a round trip, so every event of the load has arrived
    finally:
        b.close()
    errors, external = [], []
    for method, p in b.events:
        if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            req = p["request"]["url"]
            if not (req == url or req.startswith("data:") or req == "about:blank"):
                external.append(req)
    return PageCheck(errors, external, layout)


@pytest.fixture(scope="module", params=["validation only", "held-out test part"])
def run(request, tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if request.param == "validation only":
        return study(base / "report-study")
    return held_out_study(base / "report-test-study")


def test_report_loads_cleanly_with_the_answer_on_the_first_screen(chromium, run, tmp_path):
    check = load(chromium, tmp_path / "profile", run / "report.html")
    assert check.errors == []
    assert check.external == []
    lay = check.layout
    assert (lay["width"], lay["height"]) == (WIDTH, HEIGHT)
    assert lay["page_width"] <= WIDTH  # nothing forces a horizontal scroll at 1280 px
    # the verdict's opening and the primary set's matrix, whole, on the first screen
    assert lay["opening"] is not None and 0 <= lay["opening"]["top"] and lay["opening"]["bottom"] <= HEIGHT
    assert lay["matrix"] is not None and 0 <= lay["matrix"]["top"] and lay["matrix"]["bottom"] <= HEIGHT
    assert lay["matrix"]["right"] <= WIDTH
    assert lay["scrolled"] == []  # every panel of the matrix whole at 1280 px, none scrolls
    assert lay["details"] and not any(lay["details"])  # per-set sentences start collapsed
    # the forest plot is shown at (nearly) its natural size: its 10 pt labels stay >= 11 px
    assert lay["forest_scale"] is not None and lay["forest_scale"] * 10 * 110 / 72 >= 11
    assert len(lay["images"]) >= 5 and all(done and w > 0 for done, w in lay["images"])
    summary = json.loads((run / "summary.json").read_text())
    part = summary["report_set"]
    persons = [p["person"] for parts in summary["persons"].values() for p in parts.get(part, [])]
    assert persons and all(p in lay["table_text"] for p in persons), persons


def test_the_check_catches_errors_and_requests_that_leave_the_page(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><img src='http://127.0.0.1:9/x.png'>"
                   "<script>console.error('boom'); null.x;</script></body></html>")  # fmt: skip
    check = load(chromium, tmp_path / "profile", bad)
    assert "http://127.0.0.1:9/x.png" in check.external
    assert any("boom" in e for e in check.errors)
    assert any(e.startswith("exception") for e in check.errors)
    assert check.layout["verdict"] is None and check.layout["matrix"] is None
