"""coherence against SimCTG's computation (similarity matrix of context and continuation
embeddings, trace / n) on sentence-transformers' own all-MiniLM-L6-v2 embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.records import Generation
from evalharness.scorers import featurize
from evalharness.scorers.coherence import Coherence
from scorer_helpers import ctx

CONTEXTS = ["The river city was built during the war.", "Her song played in the old church.",
            "The first season of the game", "North of the bridge the road"]
TEXTS = ["Later the bridge over the river was long and high.", "Many people came to hear it sung.",
         "was played by most of the team.", "an album"]


def texts_as(run: str, texts) -> list[Generation]:
    return [Generation(prompt_id=f"{i:05d}", run=run, text=t, token_ids=(), num_tokens=0,
                       stopped_by_eos=False, logprobs_model=(), logprobs_sampler=()) for i, t in enumerate(texts)]


def test_equals_simctg_trace_over_sentence_transformers_embeddings(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    human = texts_as("human", TEXTS[::-1])
    result = Coherence(batch_size=3).score(texts_as("r", TEXTS), ctx(human=human, context_texts=CONTEXTS,
                                                                  resamples=50, cache_dir=tmp_path))
    encoder = st.SentenceTransformer(str(featurize.minilm_path()), device="cpu")
    prefix, generated = encoder.encode(CONTEXTS), encoder.encode(TEXTS)
    similarities = (prefix @ generated.T) / np.outer(np.linalg.norm(prefix, axis=1), np.linalg.norm(generated, axis=1))
    assert result.values["coherence"] == pytest.approx(np.trace(similarities) / len(TEXTS), abs=1e-5)
    assert result.per_sample["coherence"] == pytest.approx(np.diag(similarities).tolist(), abs=1e-5)
    low, high = result.ci["coherence"]
    assert low <= result.values["coherence"] <= high
    assert list((tmp_path / "features").rglob("contexts-*.npy"))  # the contexts' embeddings are cached


def test_bad_options_name_the_key():
    with pytest.raises(UserError, match="^batch_size:"):
        Coherence(batch_size=0)
    with pytest.raises(UserError, match="^featurizer:"):
        Coherence(featurizer="")
