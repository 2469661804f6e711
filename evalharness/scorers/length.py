"""Length statistics: mean continuation length and end-of-text rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.records import Generation, ScoreResult
from evalharness.scorers.base import CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci


@SCORERS.register("length")
@dataclass(frozen=True)
class Length(Scorer):
    """`mean_length`: mean number of generated tokens (end-of-text included when produced).
    `eos_rate`: share of generations that ended with end-of-text rather than at max_new_tokens.
    Both per text, so their intervals bootstrap the per-text values over prompts."""

    metrics = {"mean_length": CLOSER, "eos_rate": CLOSER}
    libraries = ("numpy",)  # numpy: arithmetic and the bootstrap's generator

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        lengths = np.array([g.num_tokens for g in generations], dtype=float)
        eos = np.array([g.stopped_by_eos for g in generations], dtype=float)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {"mean_length": float(lengths[idx].mean()), "eos_rate": float(eos[idx].mean())}

        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        per_sample = {"mean_length": tuple(lengths), "eos_rate": tuple(eos)}
        return ScoreResult(values=values, ci=ci, per_sample=per_sample)
