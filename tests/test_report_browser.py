"""report.html in a real headless browser: Debian's chromium, driven through the DevTools
protocol over a pipe (--remote-debugging-pipe: no port, no websocket package, stdlib only).

The page must load with no console error, no uncaught exception and no blocked resource, show
the summary table, decode every inlined image, and run no script at all (not even one smuggled
in through a generation). Skips, saying why, only where chromium is not installed or cannot
start; fails instead when EVALHARNESS_REQUIRE_BROWSER=1 (for CI, where it must run). A
screenshot of each page is kept in the test's tmp folder (and copied to
$EVALHARNESS_SCREENSHOTS when that is set, for a person to look at).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from test_report import INJECTED, build_results, crafted_copy

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars")
TIMEOUT = 60.0
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian) or set CHROMIUM=/path/to/chromium"


def chromium_binary() -> str | None:
    candidate = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return candidate if candidate and os.access(candidate, os.X_OK) else None


class Browser:
    """A headless chromium and one page, spoken to over the DevTools pipe (fds 3 and 4 of the
    child; each message is JSON followed by a NUL byte)."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # Move the child's ends above 4 so that the dup2s onto 3 and 4 cannot clobber each other.
        low_r = fcntl_dup(to_child_r)
        low_w = fcntl_dup(from_child_w)
        os.close(to_child_r), os.close(from_child_w)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_DUP2, low_r, 3), (os.POSIX_SPAWN_DUP2, low_w, 4)]
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        try:
            self.pid = os.posix_spawn(binary, argv, os.environ, file_actions=actions, setpgroup=0)
        finally:
            os.close(low_r), os.close(low_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    # -- protocol --
    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = TIMEOUT) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe (it exited)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def wait_for(self, method: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self.receive(deadline))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self.receive(deadline))
        except TimeoutError:
            pass

    # -- page --
    def open_page(self, width: int = 1280, height: int = 1600) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                             session=False)
        self.session = attached["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def load(self, path: Path) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_for("Page.loadEventFired")
        self.drain(0.5)  # late console messages and violation reports

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, and error-level log entries (blocked or failed
        loads, Content-Security-Policy violations) since the last load."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("uncaught: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append("log: " + params["entry"].get("text", ""))
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        if not self.exited_within(10):
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the process group of the chromium started here
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.to_child), os.close(self.from_child)

    def exited_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                    return True
            except ChildProcessError:
                return True
            time.sleep(0.1)
        return False


def fcntl_dup(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)


def unavailable(reason: str) -> None:
    """Skip; but fail where CI promised a browser (EVALHARNESS_REQUIRE_BROWSER=1), so a broken
    install cannot pass unnoticed."""
    if os.environ.get("EVALHARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"EVALHARNESS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = chromium_binary()
    if binary is None:
        unavailable(f"chromium not found: {INSTALL_HINT}")
    folder = tmp_path_factory.mktemp("chromium")
    log = folder / "chromium.log"
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=folder))
    started = Browser(binary, profile, log)
    try:
        started.send("Browser.getVersion", session=False, timeout=TIMEOUT)
        started.open_page()
    except (OSError, TimeoutError, EOFError, RuntimeError) as exc:
        started.close()
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        unavailable(f"chromium ({binary}) cannot run here: {exc}\n{tail}")
    yield started
    started.close()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, tiny_model_dir, corpus_jsonl, browser) -> Path:
    """Requested after `browser`, so nothing is built where the test will skip."""
    return build_results(tmp_path_factory, tiny_model_dir, corpus_jsonl)


def keep_screenshot(browser: Browser, path: Path) -> Path:
    shot = browser.screenshot(path)
    target = os.environ.get("EVALHARNESS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)
    return shot


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
