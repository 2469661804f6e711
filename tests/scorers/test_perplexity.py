"""Pooled perplexity against a direct computation."""

import math

import numpy as np
import pytest

from evalharness.scorers.perplexity import Perplexity
from scorer_helpers import check_intervals, ctx, gen


def naive(records, field):
    logprobs = [lp for r in records for lp in getattr(r, field)]
    return math.exp(-sum(logprobs) / len(logprobs))


def test_pooled_over_tokens_from_both_logprob_fields():
    records = [
        gen([1, 2, 3], logprobs=[-1.0, -2.0, -3.0], sampler=[-0.5, -0.5, -0.5]),
        gen([4], eos=True, logprobs=[-0.1, -0.2], sampler=[-0.1, -0.1]),  # EOS counts
        gen([], logprobs=[], sampler=[]),
    ]
    result = Perplexity().score(records, ctx())
    assert result.values["perplexity"] == pytest.approx(naive(records, "logprobs_model"), rel=1e-12)
    assert result.values["perplexity_sampler"] == pytest.approx(naive(records, "logprobs_sampler"), rel=1e-12)
    assert result.values["perplexity"] == pytest.approx(math.exp(6.3 / 5))  # not a mean of per-text ppl


def test_missing_logprobs_are_left_out_and_broken_records_raise():
    without = [gen([1, 2], logprobs=[-1.0, -1.0], sampler=[]), gen([3], logprobs=[-2.0], sampler=[])]
    assert set(Perplexity().score(without, ctx()).values) == {"perplexity"}
    broken = [gen([1, 2], logprobs=[-1.0])]
    with pytest.raises(ValueError, match="logprobs_model"):
        Perplexity().score(broken, ctx())


def test_intervals_recompute_the_pooled_ratio():
    rng = np.random.default_rng(0)
    records = [gen(range(1, k + 1), prompt_id=str(i), logprobs=list(-rng.exponential(2.0, size=k)))
               for i, k in enumerate(rng.integers(1, 30, size=50))]
    check_intervals(Perplexity(), records)
