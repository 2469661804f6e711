"""The rating page in headless chromium (tests/chromium.py), served by the real `annotate`
command: rate a HIT with the keyboard only (each rating saved as it is made), move on with
Enter, get the next HIT, finish; the ratings are in SQLite; the token leaves the address bar
and a reload resumes the HIT; markup and script in a generation stay visible text and run
nothing. Also the MTurk question template, filled in with a batch row as MTurk would, its
texts in an order of each worker's own.

A screenshot of the page is kept in the test's tmp folder (and copied to
$EVALHARNESS_SCREENSHOTS when that is set)."""

from __future__ import annotations

import json
import re
import time

import pytest

from annotation_helpers import INJECTED, Server, load_plan, read_db, write_db, write_results
from chromium import keep_screenshot
from evalharness.annotation.crowd import study_token
from evalharness.cli import main

RUNS = ["human", "greedy"]
KEYS = {str(d): 48 + d for d in range(10)} | {"Enter": 13}


@pytest.fixture(scope="module")
def served(browser, tmp_path_factory):
    """Requested after `browser`, so no server starts where the test will skip."""
    root = write_results(tmp_path_factory.mktemp("page") / "results", RUNS, prompts=4, inject=True)
    server = Server(root, "--per-item", 3, "--hit-size", 4, "--annotators", 3)
    yield server
    server.stop()


def press(browser, key: str) -> None:
    code = "Enter" if key == "Enter" else f"Digit{key}"
    text = "\r" if key == "Enter" else key
    for kind in ("keyDown", "keyUp"):
        event = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": KEYS[key]}
        browser.send("Input.dispatchKeyEvent", {**event, "text": text} if kind == "keyDown" else event)


def wait_until(browser, expression: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {expression}; status: {browser.evaluate(STATUS)}")


STATUS = "document.getElementById('status').textContent"
FACTS = """JSON.stringify({
  texts: Array.from(document.querySelectorAll('#items .text')).map(p => p.textContent),
  radios: document.querySelectorAll('#items input[type=radio]').length,
  unlabelled: Array.from(document.querySelectorAll('input')).filter(i => !i.closest('label')).length,
  legends: Array.from(document.querySelectorAll('fieldset')).every(f => f.querySelector('legend')),
  scripts: document.scripts.length,
  smuggled: document.querySelectorAll('#items img, #items script, #items [onerror]').length,
  checked: Array.from(document.querySelectorAll('#items fieldset')).map(
      f => (f.querySelector('input:checked') || {value: null}).value),
  active: document.activeElement ? document.activeElement.id : null,
  submit_disabled: document.getElementById('submit').disabled,
  progress: document.getElementById('progress-text').textContent,
})"""


def facts(browser) -> dict:
    return json.loads(browser.evaluate(FACTS))


def value_for(text: str) -> int:
    """The simulated annotator's rating of a text (varied, so a wrong mapping shows)."""
    return 1 + sum(map(ord, text)) % 6


def no_dialogs(browser) -> bool:
    return not any(e.get("method") == "Page.javascriptDialogOpening" for e in browser.events)


def rate_hit_with_keyboard(browser, tmp_path=None) -> list[tuple[str, int]]:
    shown = facts(browser)["texts"]
    typed = []
    for index, text in enumerate(shown):
        value = value_for(text)
        press(browser, str(value))
        typed.append((text, value))
        if tmp_path is not None and index == len(shown) // 2:
            keep_screenshot(browser, tmp_path / "annotate-page.png")
    return typed


def test_keyboard_rating_submit_and_next_hit(browser, served, tmp_path):
    plan = load_plan(served.root)
    token = served.links()["a01"]
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 1300, "deviceScaleFactor": 1,
                                                         "mobile": False})
    browser.load_url(f"http://127.0.0.1:{served.port}/?token={token}")
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    first = facts(browser)
    assert first["radios"] == 24 and first["unlabelled"] == 0 and first["legends"]
    assert first["scripts"] == 1 and first["smuggled"] == 0 and first["submit_disabled"]
    typed = rate_hit_with_keyboard(browser, tmp_path)
    after = facts(browser)
    assert after["checked"] == [str(v) for _, v in typed]
    assert after["active"] == "submit" and not after["submit_disabled"]
    press(browser, "Enter")
    wait_until(browser, f"{STATUS}.startsWith('Saved 4 ratings')")
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    second = facts(browser)
    assert set(second["texts"]).isdisjoint(first["texts"]) and "HIT 2 of at most 2" in second["progress"]
    assert stored_ratings(served, plan) == sorted(typed)
    typed += rate_hit_with_keyboard(browser)
    press(browser, "Enter")
    wait_until(browser, "!document.getElementById('finished').hidden")
    assert "rated every text" in browser.evaluate("document.getElementById('finished-text').textContent")
    assert stored_ratings(served, plan) == sorted(typed)
    assert browser.errors() == [] and no_dialogs(browser)


def stored_ratings(server, plan) -> list[tuple[str, int]]:
    rows = read_db(server.root, "SELECT item_id, typicality FROM ratings WHERE annotator = 'a01'")
    return sorted((plan.items[item_id].text, value) for item_id, value in rows)


def test_markup_in_a_generation_stays_text_and_runs_nothing(browser, served):
    """Another annotator: every HIT holds one whole run, so one injected text (prompt 00000)."""
    browser.load_url(f"http://127.0.0.1:{served.port}/?token={served.links()['a02']}")
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    shown = facts(browser)
    assert sum(text.endswith(INJECTED) for text in shown["texts"]) == 1
    assert shown["scripts"] == 1 and shown["smuggled"] == 0
    assert browser.evaluate("document.getElementById('items').innerText").count("<script>alert(1)</script>") == 1
    browser.drain(0.5)  # an image load attempt or a CSP report would arrive now
    assert browser.errors() == [] and no_dialogs(browser)


def test_the_page_fits_a_phone(browser, served):
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2,
                                                         "mobile": True})
    try:
        browser.load_url(f"http://127.0.0.1:{served.port}/?token={served.links()['a02']}")
        wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
        layout = json.loads(browser.evaluate("""JSON.stringify({
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          smallest: Math.min(...Array.from(document.querySelectorAll('.choices label'))
                      .map(l => Math.min(l.getBoundingClientRect().height, l.getBoundingClientRect().width))),
        })"""))
        assert layout["overflow"] <= 0 and layout["smallest"] >= 44, layout  # touch targets >= 44 px
    finally:
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                                                             "mobile": False})


def open_link(browser, url: str) -> None:
    """A fresh load (from another page, a fragment-only change would not reload)."""
    browser.load_url("about:blank")
    browser.load_url(url)


def test_the_token_leaves_the_address_bar_and_a_reload_resumes(browser, served):
    token, base = served.links()["a03"], f"http://127.0.0.1:{served.port}/"
    open_link(browser, f"{base}#token={token}")
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    assert browser.evaluate("location.href") == base  # no token in the address bar (or the history entry)
    first = facts(browser)
    press(browser, "3")
    press(browser, "5")  # two ratings, no submit: each is saved as it is made
    wait_until(browser, f"{STATUS} === 'Saved.'")
    deadline = time.monotonic() + 30
    while len(read_db(served.root, "SELECT 1 FROM ratings WHERE annotator = 'a03'")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(v for (v,) in read_db(served.root, "SELECT typicality FROM ratings WHERE annotator = 'a03'")) == [3, 5]
    browser.events.clear()
    browser.send("Page.reload")
    browser.wait_for("Page.loadEventFired")
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    resumed = facts(browser)
    assert resumed["texts"] == first["texts"] and resumed["checked"] == ["3", "5", None, None]
    assert browser.evaluate("location.href") == base
    open_link(browser, f"{base}?token={token}")  # an old link: redirected to the fragment form, then cleared
    wait_until(browser, "document.querySelectorAll('#items .item').length === 4")
    assert browser.evaluate("location.href") == base and facts(browser)["texts"] == first["texts"]
    assert token not in served.log.read_text().split("serving on", 1)[1]  # printed once at the start, never logged
    assert browser.errors() == [] and no_dialogs(browser)


def test_a_full_study_says_so(browser, served):
    """Its 3 places taken (no HIT claimed, so the other tests are not disturbed), a fourth
    participant gets a page that says the study is full, and the link leaves the address bar."""
    link = study_token(load_plan(served.root), load_plan(served.root).groups[-1].group_id)
    assert [served.join(link, f"taken{n}")[0] for n in range(3)] == [200] * 3
    base = f"http://127.0.0.1:{served.port}/"
    open_link(browser, f"{base}?study={link}&PROLIFIC_PID=late1&STUDY_ID=s&SESSION_ID=x")
    wait_until(browser, "!document.getElementById('finished').hidden")
    closed = json.loads(browser.evaluate("JSON.stringify([document.getElementById('finished-title').textContent, "
                                         "document.getElementById('finished-text').textContent, "
                                         "document.getElementById('hit').hidden, location.href])"))
    assert closed[0] == "This study is not open to you" and closed[1].startswith("Study full: all 3 places")
    assert closed[2] is True and closed[3] == base
    unexpected = [e for e in browser.errors() if "responded with a status of 409" not in e]  # the refusal itself
    assert unexpected == [] and no_dialogs(browser)


def test_a_holder_who_lost_the_hit_is_told_and_gets_the_next_one(browser, tmp_path):
    root = write_results(tmp_path / "results", ["human"], prompts=4)
    server = Server(root, "--per-item", 1, "--hit-size", 2, "--annotators", 1)
    try:
        open_link(browser, f"http://127.0.0.1:{server.port}/#token={server.links()['a01']}")
        wait_until(browser, "document.querySelectorAll('#items .item').length === 2")
        first = facts(browser)["texts"]
        press(browser, "4")
        wait_until(browser, f"{STATUS} === 'Saved.'")
        (hit_id, group_id), = read_db(root, "SELECT hit_id, group_id FROM assignments WHERE annotator = 'a01'")
        write_db(root, "UPDATE assignments SET last_active_at = last_active_at - 3 * 3600")  # 3 h idle
        status, joined = server.join(study_token(load_plan(root), group_id), "waiting1")
        assert status == 200 and server.hit(joined["token"])["hit_id"] == hit_id  # passed on
        press(browser, "5")  # the idle holder comes back: told, and given the next HIT
        wait_until(browser, f"{STATUS}.includes('passed to another annotator')")
        wait_until(browser, "document.querySelectorAll('#items .item').length === 2")
        assert set(facts(browser)["texts"]).isdisjoint(first)
        assert read_db(root, "SELECT COUNT(*) FROM ratings WHERE annotator = 'a01'") == [(0,)]
        assert read_db(root, "SELECT typicality FROM rating_history WHERE annotator = 'a01'") == [(4,)]
    finally:
        server.stop()


def test_the_mturk_template_shows_texts_as_text(browser, tmp_path):
    import csv

    root = write_results(tmp_path / "results", RUNS, prompts=3, inject=True,
                         texts_for={("human", "00001"): "Café ☕ 🙂 日本語\nline two"})
    assert main(["annotate", "mturk", str(root), "--per-item", "2", "--hit-size", "5"]) == 0
    template = (root / "annotation" / "mturk_question.html").read_text()
    with open(root / "annotation" / "mturk_batch.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if load_plan(root).group_by_id[r["group_id"]].run == "human")
    page = re.sub(r"\$\{(\w+)\}", lambda m: row[m.group(1)], template)  # MTurk's substitution
    page = page.replace('<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>', "")  # offline
    (tmp_path / "hit.html").write_text(page, encoding="utf-8")
    plan = load_plan(root)
    group = plan.group_by_id[row["group_id"]]
    orders = {}
    for worker in ("A1WORKER", "A2WORKER", "A3WORKER", "A4WORKER", "A1WORKER"):
        browser.load_url((tmp_path / "hit.html").resolve().as_uri() + f"?assignmentId=X{worker}&workerId={worker}")
        shown = json.loads(browser.evaluate("JSON.stringify(Array.from(document.querySelectorAll('section.item'))"
                                            ".map(s => [s.querySelector('.text').textContent, "
                                            "s.querySelector('input[type=hidden]').value, "
                                            "s.querySelector('legend').textContent]))"))
        by_id = {item_id: text for text, item_id, _ in shown}
        assert by_id == {i: plan.items[i].text for i in group.item_ids}  # each text with its own item id
        assert [legend for *_, legend in shown] == [f"Text {k}: how typical is it?" for k in range(1, len(shown) + 1)]
        order = [item_id for _, item_id, _ in shown]
        assert orders.setdefault(worker, order) == order  # a reload keeps a worker's order
    assert len({tuple(order) for order in orders.values()}) > 1  # workers do not all see one order
    shown = [text for text, *_ in shown]
    assert "Café ☕ 🙂 日本語\nline two" in shown and any(INJECTED in text for text in shown)
    assert browser.evaluate("document.querySelectorAll('section.item img, section.item script').length") == 0
    assert browser.errors() == [] and no_dialogs(browser)
