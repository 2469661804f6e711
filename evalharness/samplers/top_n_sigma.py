"""Top-nσ sampling (Tang et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import SAMPLERS, Truncation, check_float, keep_argmax


def within_n_sigma(scores: torch.Tensor, n: float) -> torch.Tensor:
    """Boolean mask of the tokens whose logit is >= max - n * sigma, sigma the standard deviation
    of the row's logits (Bessel-corrected, as torch.std in the authors' code), in float64. Logits
    already at -inf (excluded by an earlier step) are left out of the statistics (as llama.cpp
    does); on finite rows this is the authors' definition. A row with a single finite logit has
    no deviation: its argmax alone is kept."""
    z = scores.double()
    finite = torch.isfinite(z)
    count = finite.sum(dim=-1, keepdim=True)
    mean = torch.where(finite, z, 0.0).sum(dim=-1, keepdim=True) / count
    squares = torch.where(finite, (z - mean) ** 2, 0.0).sum(dim=-1, keepdim=True)
    sigma = torch.sqrt(squares / (count - 1))  # NaN for one finite logit: nothing passes, argmax stays
    top = z.max(dim=-1, keepdim=True).values
    return keep_argmax(z >= top - n * sigma, scores)


@SAMPLERS.register("top_n_sigma")
@dataclass(frozen=True)
class TopNSigma(Truncation):
    """Top-nσ sampling (Tang, Liu, Xu, Wang & Chen 2024, Top-nσ: Not All Logits Are You Need):
    after the temperature, keep every token whose logit l satisfies l >= max(l) - n * σ(l), σ the
    standard deviation of the row's logits, and sample from the softmax of the tempered logits
    on that set. Temperature scales max and σ alike, so the support does not depend on it (the
    paper's temperature invariance); it reshapes only the probabilities inside the support.
    With interpolation m: (1 - m) * that distribution + m * the tempered full one (base.truncate)."""

    n: float
    paper = "Tang et al. 2024, Top-nσ: Not All Logits Are You Need"

    def check(self) -> None:
        check_float(self.n, "n", ">= 0", lambda v: v >= 0)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return within_n_sigma(scores, self.n)
