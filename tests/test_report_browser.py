"""report.html in a real headless browser: Debian's chromium, driven through the DevTools
protocol over a pipe (--remote-debugging-pipe; the driver is tests/chromium.py).

The page must load with no console error, no uncaught exception and no blocked resource, show
the summary table, decode every inlined image, and run no script at all (not even one smuggled
in through a generation). Skips, saying why, only where chromium is not installed or cannot
start; fails instead when EVALHARNESS_REQUIRE_BROWSER=1 (for CI, where it must run). A
screenshot of each page is kept in the test's tmp folder (and copied to
$EVALHARNESS_SCREENSHOTS when that is set, for a person to look at).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chromium import keep_screenshot
from test_report import INJECTED, build_results, crafted_copy


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, tiny_model_dir, corpus_jsonl, browser) -> Path:
    """Requested after `browser`, so nothing is built where the test will skip."""
    return build_results(tmp_path_factory, tiny_model_dir, corpus_jsonl)


PAGE_FACTS = """JSON.stringify((() => {
  const table = document.getElementById('summary-table');
  const box = table ? table.getBoundingClientRect() : null;
  const imgs = Array.from(document.images);
  return {
    table: !!table,
    visible: !!box && box.width > 200 && box.height > 50 && getComputedStyle(table).visibility === 'visible',
    rows: table ? Array.from(table.tBodies[0].rows).map(r => r.cells[0].textContent) : [],
    first_cell: table ? table.tBodies[0].rows[0].cells[1].textContent : '',
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    scripts: document.scripts.length,
    title: document.title,
    samples: document.querySelectorAll('details.sample').length,
  };
})())"""


def test_report_loads_without_errors_and_shows_the_table(browser, results_dir, tmp_path):
    browser.load(results_dir / "report.html")
    assert browser.errors() == []
    facts = json.loads(browser.evaluate(PAGE_FACTS))
    runs = [r["run"] for r in json.loads((results_dir / "summary.json").read_text())]
    assert facts["table"] and facts["visible"], facts
    assert facts["rows"] == runs and runs[0] == "human"
    assert "±" in facts["first_cell"]
    assert facts["images"] == len(list((results_dir / "plots").glob("*.png"))) == facts["decoded"]
    assert facts["scripts"] == 0 and facts["samples"] >= 1
    shot = keep_screenshot(browser, tmp_path / "report.png")
    assert_not_blank(shot)


def test_injected_markup_stays_text_in_the_browser(browser, results_dir, tmp_path):
    folder = crafted_copy(results_dir, tmp_path / "crafted")
    browser.load(folder / "report.html")
    assert browser.errors() == []
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.querySelectorAll('img:not([src^=\"data:image/png\"])').length") == 0
    shown = browser.evaluate("document.getElementById('samples').innerText")
    assert INJECTED in shown
    browser.evaluate("document.getElementById('samples').scrollIntoView()")
    keep_screenshot(browser, tmp_path / "report-crafted-samples.png")


def test_console_errors_are_caught(browser, tmp_path):
    """The checks above can fail: a page that logs an error and throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>broken</title><p>x</p>"
                    "<script>console.error('logged'); throw new Error('thrown');</script>")
    browser.load(page)
    errors = browser.errors()
    assert any("logged" in e for e in errors) and any("thrown" in e for e in errors), errors


def assert_not_blank(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1280, 1600)
        low, high = image.convert("L").getextrema()
    assert high - low > 100, "the screenshot is blank"
