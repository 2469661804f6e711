"""Nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Sampler, apply_temperature, check_float, check_interpolation, check_temperature, probabilities,
    truncate,
)


def smallest_set_reaching(mass: torch.Tensor, order_key: torch.Tensor, p: float) -> torch.Tensor:
    """Boolean mask of the smallest prefix, in ascending `order_key`, whose probability `mass`
    reaches p. Tokens tied on `order_key` with the last one taken are taken too, so the set
    does not depend on how a sort breaks ties. At least one token is always kept."""
    sorted_key, order = torch.sort(order_key, dim=-1)
    cumulative = torch.cumsum(mass.gather(-1, order), dim=-1)
    last = (cumulative < p).sum(dim=-1, keepdim=True).clamp(max=mass.shape[-1] - 1)
    threshold = sorted_key.gather(-1, last)
    return order_key <= threshold


@SAMPLERS.register("top_p")
@dataclass(frozen=True)
class TopP(Sampler):
    """Nucleus sampling (Holtzman et al. 2019): sample from the smallest set of most likely
    tokens whose total probability is >= p, renormalised, after an optional temperature.

    Exact support: sort by probability, find the first rank where the cumulative probability
    reaches p; keep every token at least as probable as that one (ties at the edge are kept).
    With interpolation m: (1 - m) * that distribution + m * the tempered full one (see
    base.truncate)."""

    p: float
    temperature: float = 1.0
    interpolation: float = 0.0
    paper = "Holtzman et al. 2019, The Curious Case of Neural Text Degeneration"

    def __post_init__(self) -> None:
        check_float(self.p, "p", "in (0, 1]", lambda v: 0 < v <= 1)
        check_temperature(self)
        check_interpolation(self)

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        scores = apply_temperature(scores, self.temperature)
        probs = probabilities(scores)
        return truncate(scores, smallest_set_reaching(probs, -probs, self.p), self.interpolation)
