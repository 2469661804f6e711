"""Mirostat 2.0 (Basu et al. 2021): truncation by a surprise threshold that adapts per row."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Truncation, apply_temperature, check_float, keep_argmax, truncate,
)


def within_surprise(scores: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the tokens whose surprise -log2 P(x) is at most the row's mu (rows, 1);
    never empty: the argmax stays (llama.cpp keeps one token when none qualifies)."""
    surprise = -torch.log_softmax(scores.double(), dim=-1) / math.log(2)
    return keep_argmax(surprise <= mu, scores)


@SAMPLERS.register("mirostat")
@dataclass(frozen=True)
class Mirostat(Truncation):
    """Mirostat 2.0 (Basu, Ramachandran, Keskar & Varshney 2021, Mirostat: A Neural Text Decoding
    Algorithm that Directly Controls Perplexity; v2 as in the authors' repository and llama.cpp's
    llama_sampler_mirostat_v2): every row starts with mu = 2 * tau. At each step, after the
    temperature, keep the tokens with surprise -log2 P(x) <= mu (at least the most likely one),
    renormalise and draw x; then, with the observed surprise s = -log2 of x's renormalised
    probability, mu <- mu - eta * (s - tau). tau is the target surprise in bits, eta the
    learning rate.

    The state is per row and follows the tokens drawn: decoding calls `start_rows(n)` for an
    object that carries each row's mu (process, then observe(tokens)); the human-text
    log-probabilities drive mu with the human tokens (the distribution mirostat would draw from
    had it produced the human prefix; a human token outside the support leaves mu unchanged, as
    its surprise is infinite). `process` alone is a row's first step (mu = 2 * tau).
    With interpolation m the draw is from (1 - m) * truncated + m * the tempered full
    distribution (base.truncate) and s is x's surprise under that mixture (an extension: with
    m = 0 it is the algorithm above)."""

    tau: float
    eta: float = 0.1
    paper = "Basu et al. 2021, Mirostat: A Neural Text Decoding Algorithm that Directly Controls Perplexity"

    def check(self) -> None:
        check_float(self.tau, "tau", "> 0 (bits)", lambda v: v > 0)
        check_float(self.eta, "eta", "> 0", lambda v: v > 0)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return within_surprise(scores, torch.full_like(scores[:, :1], 2 * self.tau, dtype=torch.float64))

    def start_rows(self, rows: int, device: torch.device | str = "cpu") -> MirostatRows:
        """Fresh per-row state for `rows` sequences decoded together."""
        return MirostatRows(self, torch.full((rows, 1), 2.0 * self.tau, dtype=torch.float64, device=device))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        raise TypeError("mirostat keeps per-row state: pass mirostat.start_rows(batch_size) to "
                        "model.generate (it reads the tokens drawn from input_ids)")


class MirostatRows:
    """One decoding call's mirostat state: mu per row. `process(scores)` gives the distribution
    each row draws from now; `observe(tokens)` updates mu with the tokens drawn from it. Used as a
    transformers logits processor it observes, before each step but the first, the last token of
    input_ids (what generate drew from the previous step's scores)."""

    strategy = "sample"

    def __init__(self, sampler: Mirostat, mu: torch.Tensor):
        self.sampler = sampler
        self.mu = mu
        """(rows, 1) float64: each row's current threshold in bits."""
        self.last_logprobs: torch.Tensor | None = None

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        tempered = apply_temperature(scores, self.sampler.temperature)
        keep = within_surprise(tempered, self.mu.to(scores.device))
        out = truncate(tempered, keep, self.sampler.interpolation)
        self.last_logprobs = torch.log_softmax(out.double(), dim=-1)
        return out

    def observe(self, tokens: torch.Tensor) -> None:
        """mu <- mu - eta * (s - tau), s = -log2 of each row's drawn token's probability."""
        if self.last_logprobs is None:
            raise RuntimeError("observe() before process(): no distribution was drawn from")
        logprob = self.last_logprobs.gather(-1, tokens.reshape(-1, 1).to(self.last_logprobs.device))
        surprise = -logprob.to(self.mu.device) / math.log(2)
        # A token outside the support (only a teacher-forced human token can be) has no finite
        # surprise: its row's mu stays as it was rather than falling to -inf for good.
        error = torch.where(torch.isfinite(surprise), surprise - self.sampler.tau, 0.0)
        self.mu = self.mu - self.sampler.eta * error
        self.last_logprobs = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.last_logprobs is not None:
            self.observe(input_ids[:, -1])
        return self.process(scores)
