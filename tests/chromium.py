"""A headless chromium driven through the DevTools protocol over a pipe
(--remote-debugging-pipe: no port, no websocket package, stdlib only), shared by the browser
tests. Skips, saying why, only where chromium is not installed or cannot start; fails instead
when EVALHARNESS_REQUIRE_BROWSER=1 (for CI, where it must run)."""

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
        self.load_url(path.resolve().as_uri())

    def load_url(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url})
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


def launch(tmp_path_factory):
    """A started browser with one page open, for a module-scoped fixture:
    `browser = launch(tmp_path_factory); yield browser; browser.close()`. Skips (or fails under
    EVALHARNESS_REQUIRE_BROWSER=1) where chromium is missing or cannot start."""
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
    return started


def keep_screenshot(browser: Browser, path: Path) -> Path:
    shot = browser.screenshot(path)
    target = os.environ.get("EVALHARNESS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)
    return shot
