"""A judge behind an OpenAI-compatible server (vLLM, TGI, llama.cpp's server and others):
`model: openai-compatible:URL#MODEL` for `judge_typicality`.

Each text is one chat-completions request (the filled template as the only user message,
one output token, temperature 0, `logprobs: true`, `top_logprobs: 20`); p(r) for r in 1..6 is
the sum of exp(logprob) over the top tokens that read r once stripped of spaces, renormalised
over the six (a rating outside the top 20 gets 0). The key, if the server needs one, is read
from the environment variable named by `api_key_env` (default OPENAI_API_KEY) and never
logged. Requests time out after `timeout` seconds and are retried at most RETRIES times (on a
connection error, 429 or 5xx); a server that cannot be reached stops scoring with one line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError

logger = logging.getLogger(__name__)

PREFIX = "openai-compatible:"
TOP_LOGPROBS = 20
RETRIES = 3
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def is_served(model: str | None) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


@dataclass(frozen=True)
class ServedJudge:
    url: str
    """The server's base URL, e.g. http://127.0.0.1:8000/v1 (chat/completions is appended)."""
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0

    @classmethod
    def parse(cls, reference: str, api_key_env: str, timeout: float) -> "ServedJudge":
        """`openai-compatible:URL#MODEL` -> a ServedJudge (the key stays in the environment)."""
        url, _, model = reference[len(PREFIX):].partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise UserError(f"model: a served judge is openai-compatible:URL#MODEL with an http(s) URL, e.g. "
                            f"openai-compatible:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct (got {reference!r})")
        return cls(url.rstrip("/"), model, api_key_env, timeout)

    def rating_probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 6) unnormalised probabilities of the six ratings, one request per prompt."""
        return np.array([self.one(prompt) for prompt in prompts], dtype=float).reshape(len(prompts), 6)

    def one(self, prompt: str) -> list[float]:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        answer = self.post("/chat/completions", body)
        try:
            top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            pairs = [(str(t["token"]), float(t["logprob"])) for t in top]
        except (KeyError, IndexError, TypeError, ValueError):
            raise UserError(f"scorers (judge_typicality).model: {self.url} answered without top log-probabilities; "
                            "the server must support logprobs and top_logprobs in chat completions") from None
        out = [0.0] * 6
        for token, logprob in pairs:
            word = token.strip()
            if word in {"1", "2", "3", "4", "5", "6"}:
                out[int(word) - 1] += math.exp(logprob)
        return out

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers=self.headers())
        for attempt in range(RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt == RETRIES:
                    raise UserError(f"scorers (judge_typicality).model: {self.url} answered HTTP {exc.code} "
                                    f"({exc.reason})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == RETRIES:
                    reason = getattr(exc, "reason", exc)
                    raise UserError(f"scorers (judge_typicality).model: cannot reach {self.url} ({reason}) after "
                                    f"{RETRIES + 1} tries") from None
            except json.JSONDecodeError:
                raise UserError(f"scorers (judge_typicality).model: {self.url} did not answer JSON") from None
            delay = 0.5 * 2 ** attempt
            logger.warning("judge server %s: try %d of %d failed; again in %.1f s", self.url, attempt + 1,
                           RETRIES + 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "")
        return {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
