"""Perplexity of the generated tokens, pooled over a run (Holtzman et al. 2019, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.records import Generation, ScoreResult
from evalharness.scorers.base import CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci

SOURCES = {"perplexity": "logprobs_model", "perplexity_sampler": "logprobs_sampler"}


def nll_sums(generations: Sequence[Generation], field: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per text: (sum of -log p over its tokens, number of tokens) from the `field` log-probs.

    None when the run has no such log-probabilities at all (every text with tokens has an empty
    tuple). A text whose log-probs are present but not one per token is a broken record: error.
    """
    sums, counts = [], []
    missing = 0
    for g in generations:
        logprobs = getattr(g, field)
        if len(logprobs) == 0 and g.num_tokens > 0:
            missing += 1
        elif len(logprobs) != g.num_tokens:
            raise ValueError(
                f"prompt {g.prompt_id} run {g.run}: {len(logprobs)} {field} for {g.num_tokens} tokens"
            )
        sums.append(-float(np.sum(logprobs, dtype=float)))
        counts.append(len(logprobs))
    if missing == len([g for g in generations if g.num_tokens > 0]):
        return None
    if missing:
        raise ValueError(f"run {generations[0].run}: {missing} generations lack {field}")
    return np.asarray(sums), np.asarray(counts, dtype=float)


def pooled_perplexity(sums: np.ndarray, counts: np.ndarray) -> float:
    """exp(total NLL / total tokens): every token weighs the same, whatever text it is in."""
    total = counts.sum()
    return float(np.exp(sums.sum() / total)) if total > 0 else float("nan")


@SCORERS.register("perplexity")
@dataclass(frozen=True)
class Perplexity(Scorer):
    """Perplexity of the text a run produced (Holtzman et al. 2019, Table 1; their
    metrics/perplexity.py): exp of the mean negative log-likelihood over *all* tokens of *all*
    generations of the run, pooled (not a mean of per-text perplexities), end-of-text included
    when generated.

    - `perplexity`: from `logprobs_model`, the raw model's probabilities (temperature 1, no
      truncation).
    - `perplexity_sampler`: from `logprobs_sampler`, the probabilities of the distribution the
      token was drawn from (what the paper's Table 1 reports for sampling methods).

    A metric is left out when the records carry no such log-probabilities. Interval: on each
    bootstrap resample of prompts the pooled ratio is recomputed from the per-text NLL sums and
    token counts.
    """

    metrics = {"perplexity": CLOSER, "perplexity_sampler": CLOSER}
    libraries = ("numpy",)  # numpy: arithmetic and the bootstrap's generator

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        parts = {}
        for metric, field in SOURCES.items():
            found = nll_sums(generations, field) if generations else None
            if found is not None and found[1].sum() > 0:
                parts[metric] = found

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {metric: pooled_perplexity(s[idx], c[idx]) for metric, (s, c) in parts.items()}

        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci)
