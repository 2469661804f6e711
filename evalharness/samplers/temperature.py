"""Pure (ancestral) sampling and temperature sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.samplers.base import SAMPLERS, Sampler, apply_temperature, check_temperature


@SAMPLERS.register("pure")
@dataclass(frozen=True)
class Pure(Sampler):
    """Pure (ancestral) sampling: x_t ~ P(x | x_<t), the model's full distribution, untouched.
    Holtzman et al. 2019, Table 1 "Pure Sampling"."""

    paper = "Holtzman et al. 2019, The Curious Case of Neural Text Degeneration"


@SAMPLERS.register("temperature")
@dataclass(frozen=True)
class Temperature(Sampler):
    """Temperature sampling: x_t ~ softmax(logits / t). Ackley et al. 1985; Ficler & Goldberg 2017;
    Holtzman et al. 2019, Table 1 "Sampling, t=0.9"."""

    temperature: float
    paper = "Ackley, Hinton & Sejnowski 1985; Holtzman et al. 2019"

    def __post_init__(self) -> None:
        check_temperature(self)

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        return apply_temperature(scores, self.temperature)
