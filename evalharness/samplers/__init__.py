"""Samplers: one registry; each a small frozen dataclass citing its paper.

Adding a sampler = a module with a registered class + one import line here."""

from evalharness.samplers.base import SAMPLERS, Sampler  # noqa: F401
from evalharness.samplers import (  # noqa: F401
    beam, contrastive, search, stochastic_beam, temperature, top_k, top_p, truncation, typical,
)
