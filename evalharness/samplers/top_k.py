"""Top-k sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Truncation, check_int,
)


@SAMPLERS.register("top_k")
@dataclass(frozen=True)
class TopK(Truncation):
    """Top-k sampling (Fan et al. 2018, Hierarchical Neural Story Generation): sample from the
    k most likely tokens, renormalised, after an optional temperature.

    Exact support: every token whose (tempered) logit is >= the k-th largest logit, so tokens
    tied with the k-th are all kept (as transformers does); k above the vocabulary keeps all.
    With interpolation m: (1 - m) * that distribution + m * the tempered full one (see
    base.truncate)."""

    k: int
    aliases = {"top_k": "k"}
    paper = "Fan, Lewis & Dauphin 2018, Hierarchical Neural Story Generation"

    def check(self) -> None:
        check_int(self.k, "k", ">= 1", lambda v: v >= 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        return scores >= kth
