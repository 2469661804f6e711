"""Self-BLEU against NLTK's sentence_bleu called once per hypothesis (the paper's code)."""

import random

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from evalharness.errors import UserError
from evalharness.scorers import SCORERS
from evalharness.scorers.self_bleu import SelfBleu, closest_other_length, self_bleu_scores
from scorer_helpers import check_intervals, ctx, gen, gens, random_texts

SMOOTH = SmoothingFunction().method1


def nltk_self_bleu(texts, k, hypotheses=None):
    """The reference: one sentence_bleu call per hypothesis, all other texts as references."""
    hypotheses = range(len(texts)) if hypotheses is None else hypotheses
    return np.array([
        sentence_bleu(texts[:h] + texts[h + 1:], texts[h], weights=(1.0 / k,) * k, smoothing_function=SMOOTH)
        for h in hypotheses
    ])


def max_diff(texts, orders=(1, 2, 3, 4, 5)):
    ours = self_bleu_scores(texts, orders)
    return max(float(np.max(np.abs(ours[k] - nltk_self_bleu(texts, k)))) for k in orders)


def test_matches_nltk_on_random_texts():
    rng = np.random.default_rng(0)
    for _ in range(40):
        texts = random_texts(int(rng.integers(2, 12)), rng, vocab=int(rng.integers(1, 7)))
        assert max_diff(texts) <= 1e-9, texts


def test_matches_nltk_on_longer_zipfian_texts():
    rng = np.random.default_rng(1)
    probs = 1.0 / np.arange(1, 301)
    texts = [[int(x) for x in rng.choice(300, size=int(rng.integers(30, 80)), p=probs / probs.sum())]
             for _ in range(25)]
    texts[3] = texts[4][:]  # an exact duplicate
    texts[5] = [7, 8, 9] * 20  # a repetition loop
    assert max_diff(texts) <= 1e-9


@pytest.mark.parametrize("texts", [
    [[], [], [1, 2]],                     # empty hypotheses (BLEU 0, brevity penalty 0)
    [[], [1]],
    [[1], [2, 3], [1, 2, 3]],             # hypotheses shorter than n
    [[1, 2, 3], [1, 2, 3], [1, 2, 3]],    # identical texts: BLEU 1
    [[4] * 30, [4] * 3, [4]],             # one token repeated: clipping by the top *other* count
    [[1, 2, 3, 4, 5], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]],  # closest-length tie -> the shorter
    [[5, 6], [7, 8]],                     # no overlap at all
])
def test_matches_nltk_on_degenerate_inputs(texts):
    assert max_diff(texts) <= 1e-9


def test_identical_texts_score_one_and_disjoint_score_zero():
    assert self_bleu_scores([[1, 2, 3, 4, 5]] * 4, [4])[4] == pytest.approx([1.0] * 4)
    assert np.all(self_bleu_scores([[1, 2], [3, 4], [5, 6]], [4])[4] == 0.0)


def test_closest_other_length_excludes_self_and_prefers_shorter():
    lengths = np.array([5, 4, 6, 5, 10])
    # 5 has another 5; 4 -> 5; 6 -> 5; 10 -> 6
    assert closest_other_length(lengths).tolist() == [5, 5, 5, 5, 6]
    assert closest_other_length(np.array([5, 4, 6])).tolist() == [4, 5, 5]  # tie for 5 -> 4


def test_scorer_value_is_mean_of_nltk_scores_on_content_ids():
    rng = np.random.default_rng(2)
    texts = random_texts(12, rng)
    records = [gen(t, prompt_id=str(i), eos=bool(i % 2)) for i, t in enumerate(texts)]  # EOS dropped
    result = SelfBleu(orders=(2, 5)).score(records, ctx())
    assert set(result.values) == {"self_bleu", "self_bleu_2", "self_bleu_5"}
    for name, k in (("self_bleu", 4), ("self_bleu_2", 2), ("self_bleu_5", 5)):
        reference = nltk_self_bleu(texts, k)
        assert abs(result.values[name] - reference.mean()) <= 1e-9
        assert np.max(np.abs(np.array(result.per_sample[name]) - reference)) <= 1e-9


def paper_self_bleu_4(all_sentences, n_sample):
    """metrics/self_bleu.py of Holtzman et al., BLEU-4: random.seed(0), then (after the draws
    for n = 1..3) each sampled sentence against all the others, weights (0.25,) * 4, method1."""
    random.seed(0)
    for _ in range(3):
        random.sample(range(len(all_sentences)), n_sample)
    scores = [sentence_bleu(references=all_sentences[:i] + all_sentences[i + 1:], hypothesis=all_sentences[i],
                            weights=(0.25, 0.25, 0.25, 0.25), smoothing_function=SMOOTH)
              for i in random.sample(range(len(all_sentences)), n_sample)]
    return sum(scores) / n_sample


def test_keep_eos_equals_the_papers_script_on_tokens_with_end_of_text():
    """gen.py's `tokens` keep the trailing end-of-text; with keep_eos we score the same ids.
    (n_sample = every text: the script's per-order draws then cover the same hypotheses.)"""
    rng = np.random.default_rng(5)
    texts = random_texts(25, rng)
    records = [gen(t, prompt_id=f"{i:05d}", eos=bool(i % 2)) for i, t in enumerate(texts)]
    ours = SelfBleu(keep_eos=True).score(records, ctx()).values["self_bleu"]
    assert ours == pytest.approx(paper_self_bleu_4([list(g.token_ids) for g in records], len(records)), abs=1e-12)
    assert SelfBleu().score(records, ctx()).values["self_bleu"] == pytest.approx(
        paper_self_bleu_4(texts, len(texts)), abs=1e-12)  # the default drops end-of-text
    assert abs(ours - SelfBleu().score(records, ctx()).values["self_bleu"]) > 1e-3


def test_max_hypotheses_reproduces_the_paper_sampling_protocol():
    rng = np.random.default_rng(3)
    texts = random_texts(30, rng)
    # the paper: random.seed(0); random.sample(...) - the same Mersenne Twister stream, without
    # touching the global generator other tests share
    sampled = random.Random(0).sample(range(len(texts)), 10)
    result = SelfBleu(max_hypotheses=10, seed=0).score(gens(texts), ctx(resamples=50))
    assert abs(result.values["self_bleu"] - nltk_self_bleu(texts, 4, sampled).mean()) <= 1e-9
    assert result.per_sample == {}
    assert SelfBleu(max_hypotheses=100).score(gens(texts), ctx()).values == SelfBleu().score(gens(texts), ctx()).values


def test_fewer_than_two_generations_emit_nothing():
    assert SelfBleu().score(gens([[1, 2, 3]]), ctx()).values == {}


def test_intervals():
    rng = np.random.default_rng(4)
    check_intervals(SelfBleu(orders=(1,)), gens(random_texts(40, rng, vocab=8, max_len=20)))
    check_intervals(SelfBleu(max_hypotheses=20), gens(random_texts(40, rng, vocab=8, max_len=20)))


@pytest.mark.parametrize("options, key", [
    ({"n": 0}, "^n: "),
    ({"n": "4"}, "^n: "),
    ({"orders": [1, 11]}, "^orders: "),
    ({"orders": 3}, "^orders: "),
    ({"max_hypotheses": 1}, "^max_hypotheses: "),
    ({"max_hypotheses": True}, "^max_hypotheses: "),
    ({"seed": 1.5}, "^seed: "),
    ({"keep_eos": "no"}, "^keep_eos: "),
])
def test_options_are_validated_naming_the_key(options, key):
    with pytest.raises(UserError, match=key):
        SelfBleu(**options)


def test_registered_and_lists_orders_as_tuple():
    assert SCORERS.get("self_bleu") is SelfBleu
    scorer = SelfBleu(orders=[3, 1, 3])
    assert scorer.orders == (3, 1)
    assert set(scorer.metrics) == {"self_bleu", "self_bleu_3", "self_bleu_1"}


def test_yaml_options_through_the_experiment_config(tmp_path):
    from evalharness.experiment import config

    base = "name: t\nmodel: {name: gpt2}\ndata: {source: docs.jsonl}\nsamplers: [greedy]\n"
    path = tmp_path / "exp.yaml"
    path.write_text(base + "scorers: [{name: self_bleu, orders: [1, 2], max_hypotheses: 500, seed: 0}]\n")
    spec = next(s for s in config.load(path).scorers if s.name == "self_bleu")
    assert spec.build() == SelfBleu(orders=(1, 2), max_hypotheses=500, seed=0)
    path.write_text(base + "scorers: [{name: self_bleu, max_hypotheses: 1}]\n")
    with pytest.raises(UserError, match=r"exp.yaml: scorers\[0\] \(self_bleu\)\.max_hypotheses: must be an integer >= 2"):
        config.load(path)
