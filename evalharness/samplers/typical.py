"""Locally typical sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Sampler, apply_temperature, check_float, check_interpolation, check_temperature, truncate,
    with_entropy,
)
from evalharness.samplers.top_p import smallest_set_reaching


@SAMPLERS.register("typical")
@dataclass(frozen=True)
class Typical(Sampler):
    """Locally typical sampling (Meister, Pimentel, Wiher & Cotterell 2022, TACL): with
    H = -sum_x P(x) log P(x), rank tokens by |-log P(x) - H| ascending and keep the smallest
    prefix of that ranking whose probability reaches p (ties on the score at the edge kept).
    With interpolation m: (1 - m) * that distribution + m * the tempered full one (see
    base.truncate)."""

    p: float
    temperature: float = 1.0
    interpolation: float = 0.0
    paper = "Meister et al. 2022, Locally Typical Sampling"

    def __post_init__(self) -> None:
        check_float(self.p, "p", "in (0, 1]", lambda v: 0 < v <= 1)
        check_temperature(self)
        check_interpolation(self)

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        scores = apply_temperature(scores, self.temperature)
        probs, logp, entropy = with_entropy(scores)
        surprise_gap = (-logp - entropy).abs()
        return truncate(scores, smallest_set_reaching(probs, surprise_gap, self.p), self.interpolation)
