"""Zipf coefficient against Counter + scipy.stats.linregress (the paper's script)."""

import operator
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from evalharness.errors import UserError
from evalharness.scorers.zipf import Zipf
from scorer_helpers import check_intervals, ctx, gen, gens


def paper_zipf(texts, top=5000):
    """metrics/zipf.py of Holtzman et al.: counts, sorted descending, linregress on logs."""
    cnt = Counter()
    for t in texts:
        cnt.update(t)
    xs = np.arange(1, min(len(cnt), top) + 1)
    ys = np.array(sorted(cnt.values(), key=operator.neg)[:top])
    a, b, r, p, std = stats.linregress(np.log(xs), np.log(ys))
    return -a, -r


@pytest.mark.parametrize("top", [5000, 40])
def test_matches_scipy_linregress(top):
    rng = np.random.default_rng(0)
    probs = 1.0 / np.arange(1, 201) ** 1.2
    texts = [[int(x) for x in rng.choice(200, size=int(rng.integers(0, 60)), p=probs / probs.sum())]
             for _ in range(80)]
    values = Zipf(top_ranks=top).score(gens(texts, eos=True), ctx()).values  # EOS not counted
    zipf, r = paper_zipf(texts, top)
    assert values["zipf"] == pytest.approx(zipf, abs=1e-12)
    assert values["zipf_r"] == pytest.approx(r, abs=1e-12)


def test_keep_eos_equals_the_papers_script_on_tokens_with_end_of_text():
    """gen.py's `tokens` keep the trailing end-of-text and metrics/zipf.py counts it."""
    rng = np.random.default_rng(4)
    probs = 1.0 / np.arange(1, 101) ** 1.1
    texts = [[int(x) for x in rng.choice(np.arange(1, 101), size=int(rng.integers(1, 40)), p=probs / probs.sum())]
             for _ in range(60)]
    records = [gen(t, prompt_id=f"{i:05d}", eos=bool(i % 3)) for i, t in enumerate(texts)]
    with_eos = Zipf(keep_eos=True).score(records, ctx()).values
    zipf, r = paper_zipf([list(g.token_ids) for g in records])  # end-of-text (id 0) kept as a token
    assert with_eos["zipf"] == pytest.approx(zipf, abs=1e-12) and with_eos["zipf_r"] == pytest.approx(r, abs=1e-12)
    assert Zipf().score(records, ctx()).values["zipf"] == pytest.approx(paper_zipf(texts)[0], abs=1e-12)
    assert abs(with_eos["zipf"] - Zipf().score(records, ctx()).values["zipf"]) > 1e-3
    with pytest.raises(UserError, match="^keep_eos: must be true or false"):
        Zipf(keep_eos="yes")


def test_zipf_law_with_exponent_one_gives_one():
    rng = np.random.default_rng(1)
    probs = 1.0 / np.arange(1, 1001)
    tokens = rng.choice(1000, size=500_000, p=probs / probs.sum())
    values = Zipf().score(gens(tokens.reshape(-1, 100).tolist()), ctx()).values
    assert abs(values["zipf"] - 1.0) < 0.05
    assert values["zipf_r"] > 0.99


def test_too_few_types_emit_nothing_and_validation():
    assert Zipf().score(gens([[3, 3, 3], []]), ctx()).values == {}
    with pytest.raises(UserError, match="^top_ranks: "):
        Zipf(top_ranks=1)


def test_intervals():
    rng = np.random.default_rng(2)
    probs = 1.0 / np.arange(1, 301)
    texts = rng.choice(300, size=(60, 50), p=probs / probs.sum()).tolist()
    check_intervals(Zipf(), gens(texts))
