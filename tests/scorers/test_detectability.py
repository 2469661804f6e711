"""Detectability on texts with known answers, GLTR features against a naive per-token loop, and
the cross-validation protocol (no prompt on both sides, seeded)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from evalharness.scorers.detection import auc_and_accuracy, grouped_folds, out_of_fold_scores
from evalharness.errors import UserError
from evalharness.scorers.featurize import get_featurizer
from evalharness.records import Generation
from evalharness.scorers.base import ScoringContext
from evalharness.scorers.detectability import Detectability, gltr_features, token_stats
from helpers import prose_chunks

MODEL = "builtin:pydocs-gpt2-small"
PROMPTS = 30
TOKENS = 64


@pytest.fixture(scope="module")
def evaluated():
    return get_featurizer("model", model_name=MODEL)


def records(texts, tokenizer, run: str) -> list[Generation]:
    out = []
    for i, text in enumerate(texts):
        ids = tuple(tokenizer.encode(text))[:TOKENS]
        out.append(Generation(f"{i:05d}", run, tokenizer.decode(list(ids)), ids, len(ids), False, (), ()))
    return out


def shuffled(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def human_texts() -> list[str]:
    return prose_chunks(PROMPTS, words=60)


def context(human, resamples=200, seed=0) -> ScoringContext:
    return ScoringContext(human=human, resamples=resamples, seed=seed, model_name=MODEL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # equal points, opposite labels
def test_exact_copies_are_indistinguishable(evaluated, human_texts):
    human = records(human_texts, evaluated.tokenizer, "human")
    copies = records(human_texts, evaluated.tokenizer, "copy")
    result = Detectability().score(copies, context(human))
    for feature in ("tfidf", "gltr", "minilm"):
        # identical features: every pair gets one score for both texts, so AUC and accuracy are exactly 1/2
        assert result.values[f"detectability_auc_{feature}"] == pytest.approx(0.5, abs=1e-9)
        assert result.values[f"detectability_acc_{feature}"] == pytest.approx(0.5, abs=1e-9)
        low, high = result.ci[f"detectability_auc_{feature}"]
        assert low <= 0.5 <= high and high - low < 0.05


def test_word_shuffled_copies_are_told_apart(evaluated, human_texts):
    rng = random.Random(0)
    human = records(human_texts, evaluated.tokenizer, "human")
    scrambled = records([shuffled(t, rng) for t in human_texts], evaluated.tokenizer, "shuffled")
    result = Detectability().score(scrambled, context(human))
    assert result.values["detectability_auc_tfidf"] > 0.9
    assert result.values["detectability_auc_gltr"] > 0.9
    # a mean-pooled sentence embedding is close to a bag of words: word order shows only weakly
    assert result.values["detectability_auc_minilm"] > 0.75
    for metric, value in result.values.items():
        low, high = result.ci[metric]
        assert low <= value <= high
    per_prompt = result.per_sample["detectability_acc_gltr"]
    assert len(per_prompt) == PROMPTS and np.mean(per_prompt) == pytest.approx(result.values["detectability_acc_gltr"])


def test_randomly_labelled_human_pairs_sit_near_one_half(evaluated):
    """Two human chunks per prompt, which one is called 'generated' decided by a coin: nothing to
    learn. (A leak of a prompt into its own training fold pushes this towards 0 or 1.)"""
    count = 60
    chunks, rng = prose_chunks(2 * count, words=60, offset=PROMPTS), random.Random(1)
    pairs = [(chunks[2 * i], chunks[2 * i + 1])[:: rng.choice((1, -1))] for i in range(count)]
    human = records([a for a, _ in pairs], evaluated.tokenizer, "human")
    other = records([b for _, b in pairs], evaluated.tokenizer, "other")
    result = Detectability(features=("tfidf",)).score(other, context(human))
    assert abs(result.values["detectability_auc_tfidf"] - 0.5) < 0.2


def test_same_seed_same_numbers(evaluated, human_texts):
    rng = random.Random(2)
    human = records(human_texts[:20], evaluated.tokenizer, "human")
    scrambled = records([shuffled(t, rng) if i % 2 else t for i, t in enumerate(human_texts[:20])],
                        evaluated.tokenizer, "half")
    scorer = Detectability(features=("tfidf", "gltr"), seed=3, folds=4, inner_folds=2)
    first, again = scorer.score(scrambled, context(human)), scorer.score(scrambled, context(human))
    assert first == again
    other_seed = Detectability(features=("tfidf",), seed=4, folds=4, inner_folds=2).score(scrambled, context(human))
    assert other_seed.per_sample["detectability_acc_tfidf"] != first.per_sample["detectability_acc_tfidf"]


def test_both_texts_cut_to_the_same_length_and_human_row_skipped(evaluated, human_texts):
    tokenizer = evaluated.tokenizer
    human = records(human_texts, tokenizer, "human")
    # the run's continuation is the human one plus extra tokens: cut to equal length they are copies
    longer = [Generation(g.prompt_id, "longer", "", g.token_ids + (11, 12, 13), g.num_tokens + 3, False, (), ())
              for g in human]
    result = Detectability(features=("tfidf",)).score(longer, context(human))
    assert result.values["detectability_auc_tfidf"] == pytest.approx(0.5)
    assert Detectability().score(human, context(human)).values == {}
    assert Detectability().score(longer[:4], context(human[:4])).values == {}  # too few prompts for 5 folds


def test_gltr_features_match_a_naive_per_token_loop(evaluated, human_texts):
    model, tokenizer = evaluated.model, evaluated.tokenizer
    texts = [tuple(tokenizer.encode(t))[:12] for t in human_texts[:3]]
    contexts = [tuple(tokenizer.encode(t))[:5] for t in human_texts[3:6]]
    got = gltr_features(token_stats(model, tokenizer, contexts, texts, "cpu", batch_size=2), np.array([12, 7, 0]))
    for row, (ctx_ids, ids, length) in enumerate(zip(contexts, texts, (12, 7, 0))):
        ranks, logprobs = [], []
        for j in range(length):
            with torch.no_grad():
                logits = model(torch.tensor([list(ctx_ids) + list(ids[:j])])).logits[0, -1].double()
            ranks.append(1 + int((logits > logits[ids[j]]).sum()))
            logprobs.append(float(torch.log_softmax(logits, -1)[ids[j]]))
        ranks = np.array(ranks)
        expected = [np.mean(ranks <= 10), np.mean((ranks > 10) & (ranks <= 100)),
                    np.mean((ranks > 100) & (ranks <= 1000)), np.mean(ranks > 1000), np.mean(logprobs)] if length else [0] * 5
        np.testing.assert_allclose(got[row], expected, atol=1e-5)


def test_folds_never_split_a_prompt():
    groups = np.repeat(np.arange(23), 2)
    for train, test in grouped_folds(groups, 5, seed=0):
        assert not set(groups[train]) & set(groups[test])
    seen: list[tuple[np.ndarray, list]] = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def fit(self, X, y):
            seen.append((X[:, 0].astype(int), self.inner))
            return self

        def predict_proba(self, X):
            assert not set(X[:, 0].astype(int)) & set(seen[-1][0])  # no training prompt among the tested
            return np.tile([0.5, 0.5], (len(X), 1))

    X = groups[:, None].astype(float)
    scores = out_of_fold_scores(X, np.tile([0.0, 1.0], 23), groups, Spy, folds=5, inner_folds=3)
    assert len(seen) == 5 and not np.isnan(scores).any()
    for train_groups, inner in seen:
        for inner_train, inner_test in inner:
            assert not set(train_groups[inner_train]) & set(train_groups[inner_test])


def test_options_are_validated():
    with pytest.raises(UserError, match="features"):
        Detectability(features=("tfidf", "bag"))
    with pytest.raises(UserError, match="folds"):
        Detectability(folds=1)
    assert set(Detectability(features=["gltr"]).metrics) == {"detectability_auc_gltr", "detectability_acc_gltr"}


def test_auc_and_accuracy_equal_sklearns():
    from sklearn.metrics import accuracy_score, roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, size=50).astype(float)
        y[:2] = (0, 1)
        scores = np.round(rng.random(50), 1)  # many ties
        auc, acc = auc_and_accuracy(y, scores)
        assert auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        assert acc == pytest.approx(accuracy_score(y, scores > 0.5))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT with MiniLM's tokenizer: the fine-tuning loop at a fraction of the cost."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from evalharness.scorers.featurize import minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    return folder


def test_finetuned_classifier_learns_a_separable_task_and_is_seeded(tiny_bert):
    from evalharness.scorers.finetune_detector import FineTunedMiniLM

    texts = ["a calm and gentle morning", "the quiet river at dawn", "soft light over the hills", "a warm and kind word",
             "error error error error", "fatal crash dump again", "segfault core dumped now", "stack overflow panic loop"]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])

    def fitted():
        return FineTunedMiniLM(epochs=8, learning_rate=3e-3, batch_size=8, seed=0, device="cpu", path=tiny_bert)

    first, again = fitted().fit(texts, labels).predict_proba(texts), fitted().fit(texts, labels).predict_proba(texts)
    np.testing.assert_array_equal(first, again)
    assert auc_and_accuracy(labels, first[:, 1])[0] == 1.0


def test_finetune_feature_through_the_scorer(evaluated, human_texts, tiny_bert, monkeypatch):
    monkeypatch.setattr("evalharness.scorers.finetune_detector.minilm_path", lambda: tiny_bert)
    human = records(human_texts[:10], evaluated.tokenizer, "human")
    rng = random.Random(3)
    scrambled = records([shuffled(t, rng) for t in human_texts[:10]], evaluated.tokenizer, "shuffled")
    scorer = Detectability(features=("finetune",), finetune_epochs=1)
    result = scorer.score(scrambled, context(human[:10], resamples=20))
    assert set(result.values) == {"detectability_auc_finetune", "detectability_acc_finetune"}
    expected_auc, expected_acc = finetuned_out_of_fold_reference(scorer, human, scrambled, evaluated.tokenizer, tiny_bert)
    assert result.values["detectability_auc_finetune"] == pytest.approx(expected_auc, abs=1e-12)
    assert result.values["detectability_acc_finetune"] == pytest.approx(expected_acc, abs=1e-12)


def finetuned_out_of_fold_reference(scorer, human, run, tokenizer, path) -> tuple[float, float]:
    """The grouped protocol written out with sklearn: GroupKFold (shuffled, seeded) over prompt
    groups, a FineTunedMiniLM fitted on each outer training part, sklearn's AUC and accuracy."""
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import GroupKFold

    from evalharness.scorers.detectability import cut_pairs
    from evalharness.scorers.finetune_detector import FineTunedMiniLM

    pairs = cut_pairs(human, run, tokenizer, scorer.max_tokens)
    texts, n = pairs.human + pairs.run, len(run)
    y, groups = np.r_[np.zeros(n), np.ones(n)], np.r_[np.arange(n), np.arange(n)]
    scores = np.full(2 * n, np.nan)
    for train, test in GroupKFold(n_splits=scorer.folds, shuffle=True, random_state=scorer.seed).split(texts, y, groups):
        model = FineTunedMiniLM(scorer.finetune_epochs, scorer.finetune_learning_rate, scorer.batch_size, scorer.seed,
                                "cpu", path=path)
        model.fit([texts[i] for i in train], y[train])
        scores[test] = model.predict_proba([texts[i] for i in test])[:, 1]
    return roc_auc_score(y, scores), accuracy_score(y, scores > 0.5)
