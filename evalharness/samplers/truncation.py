"""Threshold truncation: epsilon and eta sampling (Hewitt et al. 2022), min-p (Nguyen et al. 2024)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evalharness.samplers.base import (
    SAMPLERS, Truncation, check_float, keep_argmax, probabilities, with_entropy,
)


@SAMPLERS.register("epsilon")
@dataclass(frozen=True)
class Epsilon(Truncation):
    """Epsilon sampling (Hewitt, Manning & Liang 2022, Truncation Sampling as Language Model
    Desmoothing): keep tokens with P(x) >= epsilon; the argmax is always kept. With
    interpolation m: (1 - m) * that distribution + m * the tempered full one (base.truncate)."""

    epsilon: float
    aliases = {"epsilon_cutoff": "epsilon"}
    paper = "Hewitt, Manning & Liang 2022, Truncation Sampling as Language Model Desmoothing"

    def check(self) -> None:
        check_float(self.epsilon, "epsilon", "in (0, 1)", lambda v: 0 < v < 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return keep_argmax(probabilities(scores) >= self.epsilon, scores)


@SAMPLERS.register("eta")
@dataclass(frozen=True)
class Eta(Truncation):
    """Eta sampling (Hewitt, Manning & Liang 2022): keep tokens with P(x) >= min(eta,
    sqrt(eta) * exp(-H)), H the entropy of P in nats; the argmax is always kept. With
    interpolation m: (1 - m) * that distribution + m * the tempered full one (base.truncate)."""

    eta: float
    aliases = {"eta_cutoff": "eta"}
    paper = "Hewitt, Manning & Liang 2022, Truncation Sampling as Language Model Desmoothing"

    def check(self) -> None:
        check_float(self.eta, "eta", "in (0, 1)", lambda v: 0 < v < 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        probs, entropy = with_entropy(scores)
        threshold = torch.clamp(math.sqrt(self.eta) * torch.exp(-entropy), max=self.eta)
        return keep_argmax(probs >= threshold, scores)


@SAMPLERS.register("min_p")
@dataclass(frozen=True)
class MinP(Truncation):
    """Min-p sampling (Nguyen et al. 2024, Turning Up the Heat: Min-p Sampling for Creative and
    Coherent LLM Outputs): keep tokens with P(x) >= p * max_x P(x), after an optional
    temperature (applied first, as in transformers). With interpolation m: (1 - m) * that
    distribution + m * the tempered full one (base.truncate)."""

    p: float
    aliases = {"min_p": "p"}
    paper = "Nguyen et al. 2024, Min-p Sampling for Creative and Coherent LLM Outputs"

    def check(self) -> None:
        check_float(self.p, "p", "in (0, 1]", lambda v: 0 < v <= 1)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        probs = probabilities(scores)
        return probs >= self.p * probs.max(dim=-1, keepdim=True).values
