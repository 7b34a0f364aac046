"""report.html in headless Chromium: no console error, no request leaving the page, and the
verdict and the forest plot on the first screen (1280 x 800).

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (stdlib only,
tests/cdp_pipe.py). Skipped, with the install command, where Chromium is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cdp_pipe import Browser, find_chromium
from report_fixtures import study

WIDTH, HEIGHT = 1280, 800
INSTALL = "apt-get update && apt-get install -y chromium"

_LAYOUT = """JSON.stringify({
  verdict: document.querySelector('#verdict')?.getBoundingClientRect().top ?? null,
  forest: document.querySelector('#fig-forest img')?.getBoundingClientRect().top ?? null,
  width: innerWidth, height: innerHeight,
  images: [...document.images].map(i => [i.complete, i.naturalWidth]),
})"""


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
    import json

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


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return study(tmp_path_factory.getbasetemp() / "report-study")


def test_report_loads_cleanly_with_the_answer_on_the_first_screen(chromium, run, tmp_path):
    check = load(chromium, tmp_path / "profile", run / "report.html")
    assert check.errors == []
    assert check.external == []
    lay = check.layout
    assert (lay["width"], lay["height"]) == (WIDTH, HEIGHT)
    assert lay["verdict"] is not None and 0 <= lay["verdict"] < HEIGHT
    assert lay["forest"] is not None and 0 <= lay["forest"] < HEIGHT
    assert len(lay["images"]) >= 6 and all(done and w > 0 for done, w in lay["images"])


def test_the_check_catches_errors_and_requests_that_leave_the_page(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><img src='http://127.0.0.1:9/x.png'>"
                   "<script>console.error('boom'); null.x;</script></body></html>")  # fmt: skip
    check = load(chromium, tmp_path / "profile", bad)
    assert "http://127.0.0.1:9/x.png" in check.external
    assert any("boom" in e for e in check.errors)
    assert any(e.startswith("exception") for e in check.errors)
    assert check.layout["verdict"] is None
