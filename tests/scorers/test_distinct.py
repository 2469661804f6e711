"""distinct-n, SimCTG rep-n and diversity against direct set/Counter computations."""

import numpy as np
import pytest

from evalharness.scorers.distinct import Distinct, DistinctParts, distinct_metrics, ngram_tables
from scorer_helpers import check_intervals, ctx, gens, random_texts


def ngrams(text, n):
    return [tuple(text[i:i + n]) for i in range(len(text) - n + 1)]


def naive(texts):
    out = {}
    for n in (1, 2, 3, 4):
        all_grams = [g for t in texts for g in ngrams(t, n)]
        out[f"distinct_{n}"] = len(set(all_grams)) / len(all_grams)
    kept = []
    for n in (2, 3, 4):
        unique = sum(len(set(ngrams(t, n))) for t in texts)
        total = sum(len(ngrams(t, n)) for t in texts)
        out[f"rep_{n}"] = 100 * (1 - unique / total)
        kept.append(1 - out[f"rep_{n}"] / 100)
    out["diversity"] = float(np.prod(kept))
    return out


def test_matches_naive_counts():
    rng = np.random.default_rng(0)
    for _ in range(20):
        texts = random_texts(int(rng.integers(1, 10)), rng, vocab=4, max_len=15) + [[1, 2, 3, 4, 5]]
        values = Distinct().score(gens(texts, eos=True), ctx()).values
        expected = naive(texts)
        assert values.keys() == expected.keys()
        for key in expected:
            assert values[key] == pytest.approx(expected[key], abs=1e-12), key


def test_hand_made_values():
    # "a b a b a" and "c c": bigrams per text (a b)(b a)(a b)(b a) -> 2 unique of 4; (c c) -> 1 of 1
    values = Distinct().score(gens([[1, 2, 1, 2, 1], [3, 3]]), ctx()).values
    assert values["distinct_1"] == pytest.approx(3 / 7)
    assert values["distinct_2"] == pytest.approx(3 / 5)
    assert values["rep_2"] == pytest.approx(100 * (1 - 3 / 5))
    assert values["rep_4"] == 0.0  # (1 2 1 2) (2 1 2 1): both distinct


def test_ngram_ids_are_exact():
    texts = [[1, 2, 3, 1, 2, 3], [2, 3, 1], [], [3]]
    for table in ngram_tables(texts, 4):
        n = table.order
        for t, text in enumerate(texts):
            grams = ngrams(text, n)
            mask = table.text == t
            assert table.count[mask].sum() == len(grams) == table.totals[t]
            assert mask.sum() == len(set(grams))
        assert table.num_grams == len({g for text in texts for g in ngrams(text, n)})


def test_shares_sum_to_the_distinct_count_so_resampled_values_are_centred():
    rng = np.random.default_rng(2)
    texts = random_texts(30, rng, vocab=20, max_len=40)
    parts = [DistinctParts.of(t) for t in ngram_tables(texts, 4)]
    for part in parts:
        assert part.shares.sum() == pytest.approx(part.num_grams, rel=1e-12)
    exact = distinct_metrics(parts)
    weighted = distinct_metrics(parts, np.ones(len(texts)))
    assert weighted == pytest.approx(exact, rel=1e-12)


def test_empty_run_emits_nothing_and_intervals():
    assert Distinct().score(gens([[], [5]]), ctx()).values == {"distinct_1": 1.0}
    rng = np.random.default_rng(1)
    check_intervals(Distinct(), gens(random_texts(50, rng, vocab=10, max_len=30)))
