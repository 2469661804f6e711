"""Nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Truncation, check_float, first_reaching, sorted_rows,
)


def nucleus(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Boolean mask of the smallest set of most likely tokens whose probability reaches p.

    The logits are sorted (values only: probability order is logit order), their float64
    probabilities summed in that order, and every token at least as likely as the one where
    the sum reaches p is kept, so tokens tied with it stay and the set does not depend on how
    a sort breaks ties."""
    if p >= 1:  # the whole distribution, including tokens too unlikely to move a float64 sum
        return torch.ones_like(scores, dtype=torch.bool)
    descending = sorted_rows(-scores).neg()
    top = descending[:, :1].double()
    mass = torch.exp(descending.double() - top)  # unnormalised float64 probabilities, largest first
    return scores >= descending.gather(-1, first_reaching(mass, p))


@SAMPLERS.register("top_p")
@dataclass(frozen=True)
class TopP(Truncation):
    """Nucleus sampling (Holtzman et al. 2019): sample from the smallest set of most likely
    tokens whose total probability is >= p, renormalised, after an optional temperature.

    Exact support: in order of probability, find the first rank where the cumulative float64
    probability reaches p; keep every token at least as probable as that one (ties at the edge
    are kept). With interpolation m: (1 - m) * that distribution + m * the tempered full one
    (see base.truncate)."""

    p: float
    aliases = {"top_p": "p"}
    paper = "Holtzman et al. 2019, The Curious Case of Neural Text Degeneration"

    def check(self) -> None:
        check_float(self.p, "p", "in (0, 1]", lambda v: 0 < v <= 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return nucleus(scores, self.p)
