"""Shared by the annotation tests: a results folder written record by record, the real
`annotate` server in a subprocess on a free loopback port, and a small stdlib HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from evalharness.records import Generation, Prompt
from evalharness.store import ResultsDir

REPO = Path(__file__).resolve().parents[2]
INJECTED = '<script>alert(1)</script><img src=x onerror="alert(2)"> & </pre>'
STARTUP_SECONDS = 90.0
REQUEST_SECONDS = 30.0


def text_of(run: str, prompt_id: str) -> str:
    return f"{run} says: continuation number {prompt_id}, written for the {run} run."


def write_results(root: Path, runs: list[str], prompts: int, inject: bool = False,
                  texts_for: dict | None = None) -> Path:
    """A results folder (prompts.jsonl + <run>/generations.jsonl) with a distinct text per
    (run, prompt); with inject=True, prompt 00000 of every run carries INJECTED markup;
    texts_for {(run, prompt id): text} overrides single texts."""
    store = ResultsDir(root)
    root.mkdir(parents=True, exist_ok=True)
    records = [Prompt(f"{i:05d}", f"doc{i}", f"The context of prompt {i}", (1, 2, 3), (4, 5), f"human {i}", False)
               for i in range(prompts)]
    store.write_prompts(records)
    for run in runs:
        store.run_dir(run).mkdir(exist_ok=True)
        texts = {p.prompt_id: text_of(run, p.prompt_id) for p in records}
        if inject:
            texts["00000"] = f"{run}: {INJECTED}"
        for (where, prompt_id), text in (texts_for or {}).items():
            if where == run:
                texts[prompt_id] = text
        store.append_generations(run, [Generation(pid, run, text, (7,), 1, False, (-1.0,), (-1.0,))
                                       for pid, text in texts.items()])
    return root


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def annotate_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalharness", "annotate", *map(str, args)], capture_output=True,
                          text=True, env=cli_env(), timeout=timeout)


SERVING = re.compile(r"^serving on http://127\.0\.0\.1:(\d+) ", re.MULTILINE)


class Server:
    """`python -m evalharness annotate RESULTS --port 0 ...` on 127.0.0.1: the server binds a
    free port itself and prints it (no probe bound and closed first, so no race for it); in its
    own process group; stop() (or kill()) always ends it."""

    def __init__(self, root: Path, *options) -> None:
        self.root = Path(root)
        self.log = self.root.parent / f"server-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "evalharness", "annotate", str(root), "--port", "0", *map(str, options)],
                stdout=log, stderr=subprocess.STDOUT, env=cli_env(), start_new_session=True)
        self.port = self.wait_ready()

    def wait_ready(self) -> int:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"annotate exited with {self.process.returncode}:\n{self.log.read_text()}")
            found = SERVING.search(self.log.read_text())
            if found:
                try:
                    if request(int(found.group(1)), "GET", "/", timeout=2)[0] == 200:
                        return int(found.group(1))
                except OSError:
                    pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"annotate did not answer within {STARTUP_SECONDS} s:\n{self.log.read_text()}")

    def links(self) -> dict[str, str]:
        lines = (self.root / "annotation" / "links.csv").read_text().splitlines()[1:]
        return {name: url.split("#token=", 1)[1] for name, url in (line.split(",", 1) for line in lines)}

    def get(self, path: str, token: str | None = None):
        return request(self.port, "GET", path, headers=bearer(token))

    def post(self, path: str, body, content_type: str = "application/json", token: str | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request(self.port, "POST", path, data, {"Content-Type": content_type, **bearer(token)})

    def hit(self, token: str) -> dict:
        status, _, body = self.get("/api/hit", token)
        assert status == 200, body
        return json.loads(body)

    def submit(self, token: str, hit_id: str, ratings: dict[str, int]):
        return self.post("/api/ratings", {"hit_id": hit_id,
                                          "ratings": [{"item_id": k, "typicality": v} for k, v in ratings.items()]},
                         token=token)

    def join(self, study: str, participant: str):
        """-> (status, the answer's JSON)."""
        status, _, body = self.post("/api/prolific", {"study": study, "participant": participant})
        return status, json.loads(body)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)  # the process group started for this server only
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)


def bearer(token: str | None) -> dict:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = REQUEST_SECONDS) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def read_db(root: Path, query: str, params=()) -> list[tuple]:
    """A read-only look at the store (safe while the server writes: WAL readers do not block)."""
    db = sqlite3.connect(f"file:{root / 'annotation' / 'judgements.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(query, params).fetchall()
    finally:
        db.close()


def write_db(root: Path, statement: str, params=()) -> None:
    """One write to the store behind the server's back (to age a HIT, or to inject a failure)."""
    db = sqlite3.connect(root / "annotation" / "judgements.sqlite", isolation_level=None, timeout=30)
    try:
        db.execute(statement, params)
    finally:
        db.close()


def load_plan(root: Path):
    from evalharness.annotation.plan import load_plan as load

    return load(root)
