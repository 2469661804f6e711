"""How much of the human text a sampler allows: coverage and perplexity of human text under it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.generation import human_logprobs
from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, Generation, ScoreResult
from evalharness.scorers.base import HIGHER, LOWER, SCORERS, Scorer, ScoringContext, bootstrap_ci


def per_prompt_logprobs(ctx: ScoringContext, run: str, prompt_ids: Sequence[str]) -> list[list[float]] | None:
    """The run's human_logprobs.jsonl in prompt order; None when the run has none (a search
    method, or a results folder without it); an error when it misses some prompts."""
    if ctx.results_dir is None or not human_logprobs.path(ctx.results_dir / run).exists():
        return None
    found = human_logprobs.read(ctx.results_dir / run)
    missing = [pid for pid in prompt_ids if pid not in found]
    if missing:
        raise UserError(f"{human_logprobs.path(ctx.results_dir / run)}: {len(missing)} prompts have no record "
                        f"(first: {missing[0]}); run the experiment again to complete it")
    return [found[pid] for pid in prompt_ids]


@SCORERS.register("human_support")
@dataclass(frozen=True)
class HumanSupport(Scorer):
    """The oracle's question of Holtzman et al. 2019 ("how large must k and p be to allow the
    human token?") asked of every configured sampler, on the experiment's own prompts: each
    token of the human continuation is scored under the run's sampling distribution given the
    context and the preceding human tokens (see evalharness/human_logprobs.py).

    - `human_coverage`: share of human tokens inside the sampler's support (log-probability
      > -inf), pooled over all tokens of all prompts. For top_k with k = K it equals the
      oracle's top-k coverage at K on the same tokens and contexts.
    - `human_perplexity_sampler`: exp(mean NLL) of the human tokens under the sampler, pooled.
      Infinite as soon as one token lies outside the support (truncation without
      interpolation): tables show it as ∞, summary.json as the string "inf".

    Runs without a per-step distribution (beam, stochastic beam, contrastive search) and the
    human row get neither. Interval: pooled ratios recomputed on each bootstrap resample of
    prompts; no interval for an infinite perplexity."""

    metrics = {"human_coverage": HIGHER, "human_perplexity_sampler": LOWER}
    libraries = ("numpy",)  # numpy: arithmetic and the bootstrap's generator

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        run = generations[0].run if generations else HUMAN_RUN
        logprobs = None if run == HUMAN_RUN else per_prompt_logprobs(ctx, run, [g.prompt_id for g in generations])
        if logprobs is None:
            return ScoreResult(values={})
        counts = np.array([len(lp) for lp in logprobs], dtype=float)
        inside = np.array([sum(math.isfinite(x) for x in lp) for lp in logprobs], dtype=float)
        nll = np.array([-float(np.sum(lp)) for lp in logprobs])  # +inf when a token is outside

        def statistic(idx: np.ndarray) -> dict[str, float]:
            tokens = counts[idx].sum()
            return {"human_coverage": float(inside[idx].sum() / tokens),
                    "human_perplexity_sampler": float(np.exp(nll[idx].sum() / tokens))}

        values = statistic(np.arange(len(logprobs)))
        ci = bootstrap_ci(statistic, len(logprobs), ctx.resamples, ctx.seed)
        if not math.isfinite(values["human_perplexity_sampler"]):
            ci.pop("human_perplexity_sampler", None)  # finite resamples would misstate an infinite value
        per_sample = {"human_coverage": tuple(inside / np.maximum(counts, 1)),
                      "human_perplexity_sampler": tuple(np.exp(nll / np.maximum(counts, 1)))}
        return ScoreResult(values=values, ci=ci, per_sample=per_sample)
