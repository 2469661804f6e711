"""Coherence of a continuation with its context (Su et al. 2022, SimCTG; Su & Collier 2022)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import Generation, ScoreResult
from evalharness.scorers import featurize, judge
from evalharness.scorers.base import HIGHER, SCORERS, Scorer, ScoringContext, bootstrap_ci

logger = logging.getLogger(__name__)

CONTEXTS = "contexts"
"""Cache prefix of the contexts' embeddings (computed once per experiment, shared by every run)."""


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of `a` with row i of `b` (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0)


@SCORERS.register("coherence")
@dataclass(frozen=True)
class Coherence(Scorer):
    """SimCTG coherence (Su et al. 2022; Su & Collier 2022): cosine of context and continuation embeddings.

    Su et al. 2022 (A Contrastive Framework for Neural Text Generation, SimCTG) and Su & Collier
    2022 (Contrastive Search Is What You Need For Neural Text Generation): coherence = mean over texts of cos(v_x, v_x^), where v_x is the sentence embedding
    of the context (the prompt) and v_x^ that of its continuation. Higher: the continuation is
    semantically closer to its context. The human row is the reference.

    The paper embeds with SimCSE-RoBERTa-large (princeton-nlp/sup-simcse-roberta-large); here the
    embedding comes from `featurizer` (as for MAUVE): "minilm" (default; all-MiniLM-L6-v2,
    offline, mean-pooled), "model" (the evaluated model's last-token state) or any Hugging Face
    id / local path (last-token final hidden state). Values are comparable only under one
    featuriser. Per-text similarities are kept; interval: their mean on each bootstrap resample."""

    featurizer: str = "minilm"
    batch_size: int = 32
    max_tokens: int = 1024
    metrics = {"coherence": HIGHER}

    def __post_init__(self) -> None:
        if not isinstance(self.featurizer, str) or not self.featurizer:
            raise UserError(f"featurizer: must be 'minilm', 'model' or a Hugging Face model id/path (got {self.featurizer!r})")
        for key in ("batch_size", "max_tokens"):
            value = getattr(self, key)
            if type(value) is not int or value < 1:
                raise UserError(f"{key}: must be an integer >= 1 (got {value!r})")

    def preflight(self) -> None:
        if self.featurizer not in ("minilm", "model") and self.featurizer not in featurize.LOADERS:
            featurize.check_hf_featurizer(self.featurizer)

    def load_featurizer(self, model_name: str, device: str) -> featurize.Featurizer:
        """Loaded once per process; under torchrun every rank shares the continuations'
        featurisation (evalharness.experiment.scoring), and with MAUVE's featuriser the
        continuations' features are MAUVE's own cached ones."""
        return featurize.get_featurizer(self.featurizer, model_name=model_name, device=device,
                                        max_tokens=self.max_tokens, batch_size=self.batch_size)

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if not generations:
            return ScoreResult(values={})
        contexts = judge.context_texts(generations, ctx)
        if not any(contexts):  # scored outside an experiment, without the prompts
            logger.info("note: coherence: no context texts given; no coherence")
            return ScoreResult(values={})
        featurizer = self.load_featurizer(ctx.model_name, ctx.device)
        context_features = featurize.cached_features(featurizer, contexts, ctx.cache_dir, CONTEXTS)
        text_features = featurize.cached_features(featurizer, [g.text for g in generations], ctx.cache_dir,
                                                  generations[0].run)
        similarity = cosine_rows(context_features, text_features)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {"coherence": float(similarity[idx].mean())}

        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci, per_sample={"coherence": tuple(float(s) for s in similarity)})
