"""Locally typical sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Truncation, check_float, exponentials, first_reaching, sorted_rows,
)

SIDE_BIT = 1
"""The lowest mantissa bit of a token's distance from the entropy says on which side it lies."""


def typical_set(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Boolean mask of the smallest set of tokens closest to the entropy, |-log P(x) - H|
    ascending, whose probability reaches p; tokens tied with the last one taken are kept.

    -log P(x) - H = mu - z(x) for the logit z and mu = log Z - H = sum_x P(x) z(x), so the
    ranking is by |z(x) - mu|, in float64. To sort distances without indices (the fast
    sort), each distance carries in its lowest bit the side of mu it lies on: from a sorted
    distance d and its side, z = mu +- d gives the token's probability back (to float64
    rounding), so the masses come out in ranking order. The side bit moves a distance by at
    most one unit in its last place: the ranking is that of float64 distances."""
    if p >= 1:  # the whole distribution, including tokens too unlikely to move a float64 sum
        return torch.ones_like(scores, dtype=torch.bool)
    z, top, _, _, mu = exponentials(scores)  # mu = log Z - H = sum_x P(x) z(x)
    distance = (((z - mu).abs().view(torch.int64) & ~SIDE_BIT) | (z < mu)).view(torch.float64)
    ranked = sorted_rows(distance).to(z.device)  # a -inf logit's distance is NaN: sorted last
    # z - mu in ranking order: the distance, negated where the side bit says "below"
    bits = ranked.view(torch.int64)
    signed = (bits ^ ((bits & SIDE_BIT) << 63)).view(torch.float64)
    mass = torch.exp(signed + (mu - top)).nan_to_num_(nan=0.0)  # unnormalised probabilities, ranked
    return distance <= ranked.gather(-1, first_reaching(mass, p))


@SAMPLERS.register("typical")
@dataclass(frozen=True)
class Typical(Truncation):
    """Locally typical sampling (Meister, Pimentel, Wiher & Cotterell 2022, TACL): with
    H = -sum_x P(x) log P(x), rank tokens by |-log P(x) - H| ascending and keep the smallest
    prefix of that ranking whose probability reaches p (ties on the score at the edge kept).
    With interpolation m: (1 - m) * that distribution + m * the tempered full one (see
    base.truncate)."""

    p: float
    aliases = {"typical_p": "p"}
    paper = "Meister et al. 2022, Locally Typical Sampling"

    def check(self) -> None:
        check_float(self.p, "p", "in (0, 1]", lambda v: 0 < v <= 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return typical_set(scores, self.p)
