"""Our metrics as evaluate modules: exactly the scorers' values on the same inputs, metric cards
in the evaluate format. (That they load and run with the network cut is tested end to end in
tests/scorers/test_evaluate_metric.py.)"""

from __future__ import annotations

from pathlib import Path

import evaluate
import numpy as np
import pytest

from evalharness import evaluate_modules
from evalharness.evaluate_modules import as_generations
from evalharness.scorers.featurize import get_featurizer
from evalharness.records import Generation
from evalharness.scorers.base import ScoringContext
from evalharness.scorers.detectability import Detectability
from evalharness.scorers.distinct import Distinct
from evalharness.scorers.repetition import Repetition
from evalharness.scorers.self_bleu import SelfBleu
from evalharness.scorers.zipf import Zipf
from helpers import prose_chunks

CARD_SECTIONS = ("## Metric Description", "## How to Use", "### Inputs", "### Output Values",
                 "#### Values from Popular Papers", "## Limitations and Bias", "## Citation")


def token_texts(seed: int = 0, n: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    texts = [[int(t) for t in rng.zipf(1.3, size=rng.integers(5, 30)) % 50] for _ in range(n)]
    texts[3] = texts[3][:4] * 5  # a repetition loop
    return texts


@pytest.mark.parametrize("name, scorer, kwargs", [
    ("self_bleu", SelfBleu(n=4, orders=(2,)), {"n": 4, "orders": [2]}),
    ("zipf", Zipf(top_ranks=20), {"top_ranks": 20}),
    ("repetition", Repetition(max_n=10), {"max_n": 10}),
    ("distinct", Distinct(), {}),
])
def test_token_modules_give_exactly_the_scorers_values(name, scorer, kwargs):
    texts = token_texts()
    module = evaluate.load(evaluate_modules.path(name))
    got = module.compute(predictions=texts, resamples=30, seed=5, **kwargs)
    expected = scorer.score(as_generations(texts), ScoringContext(human=(), resamples=30, seed=5))
    assert {k: v for k, v in got.items() if not k.endswith(("_low", "_high"))} == expected.values
    assert {k: (got[f"{k}_low"], got[f"{k}_high"]) for k in expected.ci} == expected.ci
    words = module.compute(predictions=["a b a b c", "a b d e f g"], **kwargs)  # texts: whitespace words
    ids = module.compute(predictions=[[0, 1, 0, 1, 2], [0, 1, 3, 4, 5, 6]], **kwargs)
    assert words == ids


def test_a_trailing_end_of_text_is_dropped_as_the_harness_does():
    module = evaluate.load(evaluate_modules.path("repetition"))
    loop = [7, 8, 9] * 4
    assert module.compute(predictions=[loop + [0]], eos_token_id=0) == module.compute(predictions=[loop])
    assert module.compute(predictions=[loop + [0]])["repetition"] == 0.0  # the end-of-text hides the loop


def test_detectability_module_gives_exactly_the_scorers_values():
    model = "builtin:pydocs-gpt2-small"
    tokenizer = get_featurizer("model", model_name=model).tokenizer
    texts = prose_chunks(40, words=30, offset=200)
    human_texts, run_texts = texts[:20], [" ".join(reversed(t.split())) for t in texts[20:]]

    def records(batch, run):
        return [Generation(f"{i:05d}", run, t, tuple(tokenizer.encode(t)), 0, False, (), ()) for i, t in enumerate(batch)]

    scorer = Detectability(features=("tfidf", "gltr"), seed=2, folds=3, inner_folds=2)
    expected = scorer.score(records(run_texts, "run"), ScoringContext(human=records(human_texts, "human"),
                                                                      resamples=40, seed=2, model_name=model))
    module = evaluate.load(evaluate_modules.path("detectability"))
    got = module.compute(predictions=run_texts, references=human_texts, features=["tfidf", "gltr"], model=model,
                         seed=2, resamples=40, folds=3, inner_folds=2)
    assert {k: v for k, v in got.items() if not k.endswith(("_low", "_high"))} == expected.values
    assert {k: (got[f"{k}_low"], got[f"{k}_high"]) for k in expected.ci} == expected.ci


def test_paths_and_metric_cards():
    assert evaluate_modules.names() == ["self_bleu", "zipf", "repetition", "distinct", "detectability"]
    for name in evaluate_modules.names():
        folder = Path(evaluate_modules.path(name))
        assert (folder / f"{name}.py").is_file()
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert card.startswith("---\n") and f"# Metric Card for" in card
        missing = [s for s in CARD_SECTIONS if s not in card]
        assert not missing, (name, missing)
    with pytest.raises(ValueError, match="known: self_bleu"):
        evaluate_modules.path("bleu")
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"evaluate_modules/*/*"' in pyproject  # shipped as package data
