"""Small builders for scorer tests: Generation records from token ids, a scoring context."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evalharness.records import Generation
from evalharness.scorers.base import ScoringContext

EOS = 0


def gen(ids: Sequence[int], run: str = "run", prompt_id: str = "0", eos: bool = False,
        logprobs: Sequence[float] | None = None, sampler: Sequence[float] | None = None,
        text: str | None = None) -> Generation:
    """One Generation; `eos=True` appends the end-of-text id (0) to the token ids."""
    token_ids = tuple(int(i) for i in ids) + ((EOS,) if eos else ())
    logprobs = tuple(logprobs) if logprobs is not None else tuple(-1.0 for _ in token_ids)
    sampler = tuple(sampler) if sampler is not None else logprobs
    return Generation(
        prompt_id=prompt_id, run=run, text=" ".join(map(str, ids)) if text is None else text,
        token_ids=token_ids, num_tokens=len(token_ids), stopped_by_eos=eos,
        logprobs_model=logprobs, logprobs_sampler=sampler,
    )


def gens(texts: Sequence[Sequence[int]], run: str = "run", **kwargs) -> list[Generation]:
    """Generations in prompt order (prompt ids "00000", "00001", ...)."""
    return [gen(t, run=run, prompt_id=f"{i:05d}", **kwargs) for i, t in enumerate(texts)]


def ctx(human: Sequence[Generation] = (), resamples: int = 0, seed: int = 0, **kwargs) -> ScoringContext:
    return ScoringContext(human=list(human), resamples=resamples, seed=seed, **kwargs)


def random_texts(n: int, rng: np.random.Generator, vocab: int = 6, max_len: int = 12) -> list[list[int]]:
    """Short texts over a tiny vocabulary (ids 1..vocab): lots of shared n-grams and ties."""
    return [[int(x) for x in rng.integers(1, vocab + 1, size=rng.integers(0, max_len + 1))] for _ in range(n)]


def check_intervals(scorer, generations, context_kwargs=None, resamples: int = 200) -> None:
    """Every emitted metric has a 95% interval that contains the point value, the same seed
    gives the same interval, and a different seed a (generally) different one."""
    context_kwargs = context_kwargs or {}
    first = scorer.score(generations, ctx(resamples=resamples, seed=7, **context_kwargs))
    again = scorer.score(generations, ctx(resamples=resamples, seed=7, **context_kwargs))
    assert first.values and set(first.ci) == set(first.values) - scorer.without_interval
    assert first.ci == again.ci and first.values == again.values
    for metric, value in first.values.items():
        assert metric in scorer.metrics
        if metric in scorer.without_interval:
            continue
        low, high = first.ci[metric]
        assert low - 1e-12 <= value <= high + 1e-12, (metric, value, low, high)
        assert metric in scorer.metrics
