"""Detectability: how well a classifier tells a run's continuations from the human ones."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, Generation, ScoreResult
from evalharness.scorers import detection
from evalharness.scorers.base import LOWER, SCORERS, Scorer, ScoringContext, bootstrap_ci
from evalharness.scorers.detection import auc_and_accuracy, out_of_fold_scores

FEATURES = ("tfidf", "gltr", "minilm", "finetune")
DEFAULT_FEATURES = ("tfidf", "gltr", "minilm")
GLTR_BUCKETS = (10, 100, 1000)
"""GLTR's rank buckets: top-10, top-100, top-1000, and beyond."""


@dataclass(frozen=True)
class PairedTexts:
    """Prompt i's human and run continuation, both cut to the same number of tokens."""

    lengths: np.ndarray
    """L_i: tokens kept of both texts of prompt i."""
    human: list[str]
    run: list[str]
    """The decoded cut texts."""


def cut_pairs(human: Sequence[Generation], run: Sequence[Generation], tokenizer,
              max_tokens: int | None) -> PairedTexts:
    """Cut both continuations of each prompt to L = min(their lengths, max_tokens) tokens (end of
    text dropped: `content_ids`) and decode them, so that length tells the classifier nothing."""
    lengths = np.array([min(len(h.content_ids), len(r.content_ids), max_tokens or math.inf)
                        for h, r in zip(human, run)], dtype=int)
    return PairedTexts(lengths, [tokenizer.decode(list(h.content_ids[:n])) for h, n in zip(human, lengths)],
                       [tokenizer.decode(list(r.content_ids[:n])) for r, n in zip(run, lengths)])


TokenStats = list[tuple[np.ndarray, np.ndarray]]
"""Per text: (rank, natural-log probability) of each of its tokens."""


def token_stats(model, tokenizer, contexts: Sequence[Sequence[int]], texts: Sequence[Sequence[int]],
                device: str, batch_size: int) -> TokenStats:
    """Rank (1 + number of tokens with a higher logit) and log-probability of every token under
    the model, given its context and the preceding tokens (evalharness.generation.ranks.rank_and_mass)."""
    import torch

    from evalharness.generation.decoding import continuation_logits
    from evalharness.generation.ranks import rank_and_mass

    if any(not c for c in contexts):
        raise ValueError("GLTR needs a context (or a start token) to predict each text's first token from")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    out: TokenStats = []
    for start in range(0, len(texts), batch_size):
        batch = [list(t) for t in texts[start:start + batch_size]]
        logits = continuation_logits(model, contexts[start:start + batch_size], batch, pad_id, device)
        scores = rank_and_mass(torch.cat(logits), torch.tensor([i for t in batch for i in t], dtype=torch.long))
        ends = np.cumsum([len(t) for t in batch])
        ranks = np.split(scores.rank.numpy(), ends[:-1])
        logprobs = np.split(np.log(scores.prob.numpy()), ends[:-1])
        out.extend(zip(ranks, logprobs))
    return out


def gltr_features(stats: TokenStats, lengths: np.ndarray) -> np.ndarray:
    """GLTR (Gehrmann et al. 2019) on each text's first L_i tokens: the shares of tokens whose
    rank is in 1-10, 11-100, 101-1000 and above 1000, and their mean log-probability (zeros for
    an empty text)."""
    out = np.zeros((len(stats), len(GLTR_BUCKETS) + 2))
    for i, ((rank, logprob), n) in enumerate(zip(stats, lengths)):
        if n:
            buckets = np.searchsorted(GLTR_BUCKETS, rank[:n], side="left")  # 0: rank <= 10 ... 3: > 1000
            out[i, :-1] = np.bincount(buckets, minlength=len(GLTR_BUCKETS) + 1) / n
            out[i, -1] = logprob[:n].mean()
    return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@SCORERS.register("detectability")
@dataclass(frozen=True)
class Detectability(Scorer):
    """Detectability: can a classifier tell the run's continuations from the human continuations
    of the same prompts? (Measured, not trained against: the discriminator idea of Holtzman et
    al. 2019's closing section; OpenAI's GPT-2 output-dataset detection baseline.)

    Protocol. Prompt i gives two texts, its human continuation (label 0) and the run's (label
    1), both cut to L_i = min(their token counts, `max_tokens`) tokens of the evaluated model
    (end-of-text dropped), since detection depends strongly on length. Grouped `folds`-fold
    cross-validation (sklearn GroupKFold, shuffled with `seed`): a prompt's two texts are always
    in the same fold. Each classifier is logistic regression (liblinear, L2) with C chosen from
    1/64..64 by an inner grouped `inner_folds`-fold cross-validation (accuracy) on the outer
    training part, then refitted on it. Every text gets the out-of-fold probability of being
    generated. `detectability_auc_<features>` = ROC AUC of those scores (0.5: indistinguishable,
    1: always told apart; below 0.5 only by chance), `detectability_acc_<features>` = accuracy
    of thresholding them at 0.5.

    Features (option `features`, default tfidf, gltr, minilm; each reported):
    - `tfidf`: word 1-2-gram TF-IDF (`min_df`), OpenAI's baseline (there min_df = 5 on 250k
      texts per class and C chosen on one validation split).
    - `gltr`: Gehrmann et al. 2019 (GLTR) from the evaluated model: shares of tokens with rank in
      top-10 / top-100 / top-1000 / beyond, and mean log-probability, each token given the
      prompt's context and the preceding tokens; standardised.
    - `minilm`: all-MiniLM-L6-v2 sentence embedding (the offline MAUVE featuriser), standardised.
    - `finetune` (not in the default): the MiniLM encoder fine-tuned as a binary classifier in
      every outer fold (`finetune_epochs`, `finetune_learning_rate`); meant for a GPU.

    Interval: percentile bootstrap over prompts (a prompt's two texts resampled together) of
    the AUC and accuracy of the fixed out-of-fold scores: conditional on the fitted classifiers,
    it does not include refitting variance. Not computed for the human run, nor for fewer
    prompts than the folds need.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    folds: int = 5
    inner_folds: int = 3
    seed: int = 0
    max_tokens: int | None = None
    min_df: int = 1
    batch_size: int = 32
    finetune_epochs: int = 3
    finetune_learning_rate: float = 5e-5

    metrics = {f"detectability_{kind}_{f}": LOWER for f in FEATURES for kind in ("auc", "acc")}
    needs_human = True

    def __post_init__(self) -> None:
        features = self.features if isinstance(self.features, (list, tuple)) else (self.features,)
        unknown = [f for f in features if f not in FEATURES]
        if not features or unknown:
            raise UserError(f"features: must be a list of {', '.join(FEATURES)} (got {self.features!r})")
        object.__setattr__(self, "features", tuple(dict.fromkeys(features)))
        for key, low in (("folds", 2), ("inner_folds", 2), ("min_df", 1), ("batch_size", 1), ("finetune_epochs", 1)):
            if not _is_int(getattr(self, key)) or getattr(self, key) < low:
                raise UserError(f"{key}: must be an integer >= {low} (got {getattr(self, key)!r})")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise UserError(f"max_tokens: must be an integer >= 1 or null (got {self.max_tokens!r})")
        if not _is_int(self.seed):
            raise UserError(f"seed: must be an integer (got {self.seed!r})")
        rate = self.finetune_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise UserError(f"finetune_learning_rate: must be a number > 0 (got {rate!r})")
        emitted = {f"detectability_{kind}_{f}": LOWER for f in self.features for kind in ("auc", "acc")}
        object.__setattr__(self, "metrics", emitted)  # the exact names this instance emits

    def enough_prompts(self, n: int) -> bool:
        """Every outer training part must still hold inner_folds prompts."""
        return n >= self.folds and n - math.ceil(n / self.folds) >= self.inner_folds

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if any(g.run == HUMAN_RUN for g in generations) or not self.enough_prompts(len(generations)):
            return ScoreResult(values={})
        if len(ctx.human) != len(generations):
            raise ValueError(f"detectability: {len(ctx.human)} human texts for {len(generations)} generations")
        from evalharness.scorers.featurize import get_featurizer

        evaluated = get_featurizer("model", model_name=ctx.model_name, device=ctx.device, batch_size=self.batch_size)
        return self.score_with(ctx.human, generations, evaluated.tokenizer, evaluated.model, ctx)

    def score_with(self, human: Sequence[Generation], run: Sequence[Generation], tokenizer, model,
                   ctx: ScoringContext) -> ScoreResult:
        """The scorer on explicit texts, tokenizer and model (None: no `gltr`)."""
        pairs = cut_pairs(human, run, tokenizer, self.max_tokens)
        n = len(run)
        y, groups = np.r_[np.zeros(n), np.ones(n)], np.r_[np.arange(n), np.arange(n)]
        scores = {}
        for feature in self.features:
            X = self.inputs(feature, human, run, pairs, tokenizer, model, ctx)
            scores[feature] = out_of_fold_scores(X, y, groups, self.classifier(feature, X, ctx.device),
                                                 self.folds, self.inner_folds, self.seed)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            rows = np.r_[idx, idx + n]  # a prompt's two texts are resampled together
            out = {}
            for f, s in scores.items():
                out[f"detectability_auc_{f}"], out[f"detectability_acc_{f}"] = auc_and_accuracy(y[rows], s[rows])
            return out

        values = statistic(np.arange(n))
        ci = bootstrap_ci(statistic, n, ctx.resamples, ctx.seed)
        per_prompt = {f"detectability_acc_{f}": tuple(((s[:n] <= 0.5).astype(float) + (s[n:] > 0.5)) / 2)
                      for f, s in scores.items()}
        return ScoreResult(values=values, ci=ci, per_sample=per_prompt)

    def inputs(self, feature: str, human: Sequence[Generation], run: Sequence[Generation], pairs: PairedTexts,
               tokenizer, model, ctx: ScoringContext):
        """What the classifier of `feature` sees for the 2n texts, human first."""
        texts = pairs.human + pairs.run
        if feature == "minilm":
            from evalharness.scorers.featurize import get_featurizer

            # each distinct text featurised once: equal texts get bit-equal features (batch
            # composition changes float rounding), and copies cost nothing
            unique, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
            return get_featurizer("minilm", device=ctx.device, batch_size=self.batch_size)(list(unique))[inverse]
        if feature != "gltr":
            return texts
        if model is None:
            raise UserError("detectability: features gltr needs the evaluated model")
        contexts = list(ctx.contexts) or [self._start_token(tokenizer)] * len(run)
        key = (id(model), _digest(contexts, human))
        if key not in _HUMAN_STATS:
            _HUMAN_STATS[key] = self._stats(model, tokenizer, contexts, human, ctx)
        stats = (_HUMAN_STATS[key], self._stats(model, tokenizer, contexts, run, ctx))
        return np.vstack([gltr_features(s, pairs.lengths) for s in stats])

    def _stats(self, model, tokenizer, contexts, generations: Sequence[Generation], ctx: ScoringContext) -> TokenStats:
        return token_stats(model, tokenizer, contexts, [g.content_ids for g in generations], ctx.device, self.batch_size)

    def classifier(self, feature: str, X, device: str):
        if feature == "tfidf":
            return detection.tfidf_classifier(self.seed, self.min_df)
        if feature == "finetune":
            from evalharness.scorers.finetune_detector import finetune_classifier

            return finetune_classifier(self.seed, self.finetune_epochs, self.finetune_learning_rate, self.batch_size, device)
        training_rows = len(X) * (self.folds - 1) / self.folds
        return detection.dense_classifier(self.seed, dual=X.shape[1] > training_rows)

    @staticmethod
    def _start_token(tokenizer) -> tuple[int, ...]:
        """Without contexts, GLTR's own convention: condition the first token on end-of-text."""
        for attr in ("bos_token_id", "eos_token_id"):
            if getattr(tokenizer, attr, None) is not None:
                return (int(getattr(tokenizer, attr)),)
        return ()


_HUMAN_STATS: dict[tuple, TokenStats] = {}
"""The human continuations' token statistics, computed once per process for all runs (a causal
model's statistics of a text's first L tokens are those of the whole text's first L)."""


def _digest(contexts: Sequence[Sequence[int]], generations: Sequence[Generation]) -> str:
    payload = repr([(tuple(c), tuple(g.content_ids)) for c, g in zip(contexts, generations)])
    return hashlib.sha256(payload.encode()).hexdigest()
