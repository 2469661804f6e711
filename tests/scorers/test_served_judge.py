"""judge_typicality with a served judge: a small OpenAI-compatible server on loopback, inside
the test, answering chat completions with top log-probabilities."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evalharness.errors import UserError
from evalharness.records import TYPICALITY_INSTRUCTIONS, Generation
from evalharness.scorers import served_judge
from evalharness.scorers.judge_typicality import JudgeTypicality
from scorer_helpers import ctx

SECRET = "sk-test-never-logged"
TOP = {"good": [(" 5", 0.6), ("5", 0.1), ("2", 0.2), ("The", 0.1)],
       "bad": [("1", 0.5), (" 2", 0.25), ("I", 0.25)],
       "chatty": [("The", 0.7), ("This", 0.3)]}


class Handler(BaseHTTPRequestHandler):
    """POST /v1/chat/completions (and /flaky/v1/..., which fails with 503 every other time)."""

    seen: list = []
    failures = {"left": 0}

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.path.startswith("/flaky") and Handler.failures["left"] > 0:
            Handler.failures["left"] -= 1
            self.send_error(503)
            return
        prompt = body["messages"][0]["content"]
        kind = next(k for k in TOP if f"[{k}]" in prompt)
        top = [{"token": t, "logprob": math.log(p)} for t, p in TOP[kind]]
        answer = {"choices": [{"message": {"role": "assistant", "content": top[0]["token"]},
                               "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                         "top_logprobs": top}]}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.seen.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def texts(*kinds) -> list[Generation]:
    return [Generation(prompt_id=f"{i:05d}", run="r", text=f"text [{k}]", token_ids=(), num_tokens=0,
                       stopped_by_eos=False, logprobs_model=(), logprobs_sampler=()) for i, k in enumerate(kinds)]


def test_ratings_from_top_logprobs(server, monkeypatch, caplog):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    scorer = JudgeTypicality(model=f"openai-compatible:{server}/v1#judge-model", api_key_env="JUDGE_KEY")
    with caplog.at_level(logging.DEBUG, logger="evalharness"):
        result = scorer.score(texts("good", "bad", "chatty"), ctx())
    good, bad = (5 * 0.7 + 2 * 0.2) / 0.9, (1 * 0.5 + 2 * 0.25) / 0.75
    assert result.per_sample["judge_typicality"][:2] == pytest.approx([good, bad], abs=1e-12)
    assert math.isnan(result.per_sample["judge_typicality"][2])  # no rating among its top tokens: left out
    assert result.values["judge_typicality"] == pytest.approx((good + bad) / 2, abs=1e-12)
    assert result.values["judge_typicality_argmax"] == pytest.approx((5 + 1) / 2)
    path, auth, body = Handler.seen[0]
    assert path == "/v1/chat/completions" and auth == f"Bearer {SECRET}"
    assert body["model"] == "judge-model" and body["logprobs"] is True and body["max_tokens"] == 1
    assert TYPICALITY_INSTRUCTIONS in body["messages"][0]["content"]
    assert SECRET not in caplog.text


def test_retries_then_succeeds(server, monkeypatch):
    monkeypatch.setattr(served_judge.time, "sleep", lambda s: None)
    Handler.failures["left"] = 2
    scorer = JudgeTypicality(model=f"openai-compatible:{server}/flaky/v1#m")
    assert scorer.score(texts("good"), ctx()).values["judge_typicality"] == pytest.approx((5 * 0.7 + 2 * 0.2) / 0.9)
    assert len(Handler.seen) == 3


def test_unreachable_server_is_one_line(monkeypatch):
    monkeypatch.setattr(served_judge.time, "sleep", lambda s: None)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scorer = JudgeTypicality(model=f"openai-compatible:http://127.0.0.1:{port}/v1#m", timeout=2)
    with pytest.raises(UserError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1 .* after 4 tries") as info:
        scorer.score(texts("good"), ctx())
    assert "\n" not in str(info.value)


def test_bad_reference_names_the_key():
    with pytest.raises(UserError, match="^model: a served judge"):
        JudgeTypicality(model="openai-compatible:127.0.0.1:8000")


def test_a_text_without_rating_survives_the_cache(server, tmp_path):
    scorer = JudgeTypicality(model=f"openai-compatible:{server}/v1#m")
    first = scorer.score(texts("good", "chatty"), ctx(cache_dir=tmp_path))
    from evalharness.scorers import judge_typicality

    judge_typicality._MEMO.clear()  # read back from the cache file, not from memory
    again = scorer.score(texts("good", "chatty"), ctx(cache_dir=tmp_path))
    assert len(Handler.seen) == 2  # the second score sent no request
    assert again.values == first.values and math.isnan(again.per_sample["judge_typicality"][1])
