"""Stage `samplers` (a plugin family): each method a small frozen dataclass citing its paper,
turning next-token logits into the distribution it draws from (transformers' logits-processor
contract); search methods (greedy, beam, contrastive, stochastic beam) run their own loop.

Entry point: SAMPLERS, the registry (name -> class). Adding a sampler = a module with a
registered class + one import line here; the contract tests then cover it."""

from evalharness.samplers.base import SAMPLERS, Sampler  # noqa: F401
from evalharness.samplers import (  # noqa: F401
    beam, contrastive, search, stochastic_beam, temperature, top_k, top_p, truncation, typical,
)
from evalharness.samplers import hf_generate  # noqa: F401
from evalharness.samplers import mirostat  # noqa: F401
from evalharness.samplers import top_n_sigma  # noqa: F401
