"""Where a token sits in a next-token distribution: its rank and the probability mass at and
above it. The oracle's measurement (Holtzman et al. 2019's "how large must k and p be?") and the
GLTR features of the detectability scorer both use it; the exact definitions are in
`evalharness.oracle`'s docstring."""

from __future__ import annotations

from typing import NamedTuple

import torch

from evalharness.errors import UserError

SCORE_ROWS = 512

class TokenScores(NamedTuple):
    rank: torch.Tensor        # int64: 1 + number of tokens with a strictly greater logit
    p: torch.Tensor           # float64: mass of tokens with logit >= the true token's
    mass_above: torch.Tensor  # float64: mass of tokens with logit > the true token's
    prob: torch.Tensor        # float64: the true token's probability


def rank_and_mass(logits, targets) -> TokenScores:
    """Rank, cumulative probability, mass above and probability of targets[i] under logits[i].

    logits: (N, V) in any float dtype (compared as float32); targets: (N,) token ids."""
    parts = []
    for start in range(0, logits.shape[0], SCORE_ROWS):
        z = logits[start:start + SCORE_ROWS].float()
        if z.device.type == "mps":  # no float64 there
            z = z.cpu()
        if bool(torch.isnan(z).any()):
            raise UserError("model.dtype: the model produced NaN logits; try float32")
        t = targets[start:start + SCORE_ROWS].to(z.device).long()
        true = z.gather(-1, t[:, None])
        above, at_or_above = z > true, z >= true
        probs = torch.softmax(z.double(), dim=-1)
        parts.append(TokenScores(
            rank=1 + above.sum(dim=-1),
            p=torch.where(at_or_above, probs, 0.0).sum(dim=-1),
            mass_above=torch.where(above, probs, 0.0).sum(dim=-1),
            prob=probs.gather(-1, t[:, None])[:, 0]))
    return TokenScores(*(torch.cat([getattr(s, f) for s in parts]).cpu() for f in TokenScores._fields))
