"""Greedy decoding: the argmax at every step (no distribution to sample from)."""

from __future__ import annotations

from dataclasses import dataclass

from evalharness.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("greedy")
@dataclass(frozen=True)
class Greedy(Sampler):
    """Greedy search: x_t = argmax_x P(x | x_<t). Baseline of Holtzman et al. (2019), Table 1.

    Ties go to the lowest token id (torch.argmax)."""

    paper = "Holtzman et al. 2019, The Curious Case of Neural Text Degeneration (baseline)"
    strategy = "greedy"
