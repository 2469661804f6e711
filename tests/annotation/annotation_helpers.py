"""Shared by the annotation tests: a results folder written record by record, the real
`annotate` server in a subprocess on a free loopback port, and a small stdlib HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def annotate_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalharness", "annotate", *map(str, args)], capture_output=True,
                          text=True, env=cli_env(), timeout=timeout)


class Server:
    """`python -m evalharness annotate RESULTS ...` on 127.0.0.1:<free port>, in its own
    process group; stop() (or kill()) always ends it."""

    def __init__(self, root: Path, *options) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.log = self.root.parent / f"server-{self.port}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "evalharness", "annotate", str(root), "--port", str(self.port), *map(str, options)],
                stdout=log, stderr=subprocess.STDOUT, env=cli_env(), start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"annotate exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if request(self.port, "GET", "/", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"annotate did not answer within {STARTUP_SECONDS} s:\n{self.log.read_text()}")

    def links(self) -> dict[str, str]:
        lines = (self.root / "annotation" / "links.csv").read_text().splitlines()[1:]
        return {name: url.split("token=", 1)[1] for name, url in (line.split(",", 1) for line in lines)}

    def get(self, path: str):
        return request(self.port, "GET", path)

    def post(self, path: str, body, content_type: str = "application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request(self.port, "POST", path, data, {"Content-Type": content_type})

    def hit(self, token: str) -> dict:
        status, _, body = self.get(f"/api/hit?token={token}")
        assert status == 200, body
        return json.loads(body)

    def submit(self, token: str, hit_id: str, ratings: dict[str, int]):
        return self.post("/api/ratings", {"token": token, "hit_id": hit_id,
                                          "ratings": [{"item_id": k, "typicality": v} for k, v in ratings.items()]})

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)  # the process group started for this server only
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)


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


def load_plan(root: Path):
    from evalharness.annotation.plan import load_plan as load

    return load(root)
