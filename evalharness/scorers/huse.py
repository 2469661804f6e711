"""HUSE: Human Unified with Statistical Evaluation (Hashimoto, Zhang & Liang 2019)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.scorers import judgements as judgements_file
from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, Generation, ScoreResult
from evalharness.scorers.base import HIGHER, SCORERS, Scorer, ScoringContext, bootstrap_ci
from evalharness.scorers.human_support import per_prompt_logprobs

logger = logging.getLogger(__name__)

NEIGHBOURS = 15
"""k of the reference's k-nearest-neighbour classifier (calculate_HUSE: KNNClassifier(15))."""
ZERO_PROBABILITY = -1000.0
"""The reference replaces a log-probability of -inf by -1000 (before dividing by the length)."""
ROWS_PER_BLOCK = 512
"""Distances are computed for this many left-out items at a time (memory: block x n)."""


def loo_knn_correct(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out correctness of the reference's k-NN (KNNClassifier in hughbzhang/HUSE
    code/utils.py): for the left-out item, squared Euclidean distances to the training items,
    cut-off = the (k+1)-th smallest of them, every training item at a distance <= the cut-off
    votes (ties included), and label 1 wins only with strictly more votes (bincount.argmax:
    a tie goes to label 0). `groups`: items of the same group (bootstrap copies of one item)
    are left out together; default: each item alone."""
    n = len(labels)
    groups = np.arange(n) if groups is None else groups
    correct = np.empty(n, dtype=bool)
    for start in range(0, n, ROWS_PER_BLOCK):
        block = slice(start, min(n, start + ROWS_PER_BLOCK))
        distances = np.sum((features[None, :, :] - features[block, None, :]) ** 2.0, axis=2)
        left_out = groups[None, :] == groups[block, None]
        distances[left_out] = np.inf  # sorts after every training item
        cutoff = np.partition(distances, NEIGHBOURS, axis=1)[:, NEIGHBOURS:NEIGHBOURS + 1]
        voters = (distances <= cutoff) & ~left_out
        ones = (voters & (labels[None, :] == 1)).sum(axis=1)
        correct[block] = (ones > voters.sum(axis=1) - ones) == (labels[block] == 1)
    return correct


def scaled(values: np.ndarray) -> np.ndarray:
    """values / their std (population), as the reference; a constant feature carries no
    information and becomes 0 (the reference would divide 0 by 0 and fail)."""
    spread = np.std(values)
    return values / spread if spread > 0 else np.zeros_like(values)


def huse_values(typicality: np.ndarray, logprob_per_word: np.ndarray, labels: np.ndarray,
                groups: np.ndarray | None = None) -> dict[str, float]:
    """HUSE, HUSE-Q and HUSE-D with the reference's arithmetic (calculate_HUSE, get_stats):
    accuracy of the k-NN on (typicality/std, log-probability per word/std) and on the first
    feature alone; HUSE = 1 - (2 acc - 1), HUSE-Q = 1 - (2 acc_q - 1), HUSE-D = 1 + HUSE - HUSE-Q."""
    features = np.vstack([scaled(typicality), scaled(logprob_per_word)]).transpose()
    accuracy = np.mean(loo_knn_correct(features, labels, groups))
    accuracy_q = np.mean(loo_knn_correct(features[:, 0][:, np.newaxis], labels, groups))
    half_tv, quality = 2.0 * accuracy - 1.0, 2.0 * accuracy_q - 1.0
    return {"huse": float(1. - half_tv), "huse_q": float(1. - quality), "huse_d": float(1 - half_tv + quality)}


@dataclass(frozen=True)
class Items:
    """The rated texts of one comparison: a run's and the human ones."""

    typicality: np.ndarray
    logprob_per_word: np.ndarray
    labels: np.ndarray
    """0 human text, 1 model text (the reference's labels)."""


def words(text: str) -> int:
    """Whitespace-separated words, at least 1 (the reference splits on single spaces)."""
    return max(1, len(text.split()))


def logprob_feature(logprobs: Sequence[float], text: str) -> float:
    total = float(np.sum(logprobs))
    return (ZERO_PROBABILITY if math.isinf(total) else total) / words(text)


def collect_items(generations: Sequence[Generation], ctx: ScoringContext, rated) -> Items | None:
    """Every rated text of the run and every rated human text. The feature of a human text is
    its log-probability under the run's sampler (the run's human_logprobs.jsonl); that of a
    model text, under the distribution it was drawn from (logprobs_sampler)."""
    run = generations[0].run
    model_ratings, human_ratings = rated.mean_typicality(run), rated.mean_typicality(HUMAN_RUN)
    if not model_ratings:
        return None
    human_logprobs = per_prompt_logprobs(ctx, run, [h.prompt_id for h in ctx.human])
    if human_logprobs is None or not human_ratings:
        logger.info("note: huse: run %s has judgements but no HUSE: %s", run,
                    "its sampler gives human text no per-step probability" if human_logprobs is None
                    else "no human text is rated")
        return None
    rows = [(human_ratings[h.prompt_id], logprob_feature(lp, h.text), 0)
            for h, lp in zip(ctx.human, human_logprobs) if h.prompt_id in human_ratings]
    rows += [(model_ratings[g.prompt_id], logprob_feature(g.logprobs_sampler, g.text), 1)
             for g in generations if g.prompt_id in model_ratings]
    typicality, feature, labels = (np.array(column) for column in zip(*rows))
    return Items(typicality.astype(float), feature.astype(float), labels.astype(int))


@SCORERS.register("huse")
@dataclass(frozen=True)
class Huse(Scorer):
    """HUSE (Hashimoto, Zhang & Liang 2019, Unifying Human and Statistical Evaluation for
    Natural Language Generation), computed exactly as `calculate_HUSE` in the reference code
    (hughbzhang/HUSE, code/utils.py), as Holtzman et al. 2019 report it in Table 1.

    Items: the run's texts and the human continuations that have typicality judgements
    (judgements.csv; evalharness/judgements.py). Features: the mean typicality rating, and the
    log-probability of the text under the run's sampler divided by its number of
    whitespace-separated words (-inf replaced by -1000 first, as the reference does), each
    divided by its standard deviation over the items. Leave-one-out k-nearest neighbours,
    k = 15, every training item at a distance <= the 16th smallest voting, a tied vote going
    to label 0 (human). HUSE = 2 (1 - LOO accuracy); HUSE-Q the same on the rating alone;
    HUSE-D = 1 + HUSE - HUSE-Q. Higher is better: 1 means indistinguishable from human text.

    Needs at least 17 rated items per run (the reference needs 16 training items). Runs
    without judgements, runs whose sampler defines no per-step distribution, and the human row
    (HUSE compares a run with the human texts) get no value. Interval: 95% percentile
    bootstrap over items (each run's and the human items resampled together; copies of the
    left-out item never vote for it)."""

    judgements: str | None = None
    """Path of the judgements CSV (default: judgements.csv in the results folder)."""
    metrics = {"huse": HIGHER, "huse_q": HIGHER, "huse_d": HIGHER}

    def __post_init__(self) -> None:
        if self.judgements is not None and (not isinstance(self.judgements, str) or not self.judgements):
            raise UserError(f"judgements: must be the path of a CSV file (got {self.judgements!r})")

    def path(self, ctx: ScoringContext):
        return judgements_file.location(ctx.results_dir, self.judgements)

    def inputs_fingerprint(self, ctx: ScoringContext) -> str | None:
        return judgements_file.fingerprint(self.path(ctx))

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        rated = judgements_file.load(self.path(ctx), ctx.runs, tuple(h.prompt_id for h in ctx.human))
        return self.score_rated(generations, ctx, rated)

    def score_rated(self, generations: Sequence[Generation], ctx: ScoringContext, rated) -> ScoreResult:
        """HUSE of the run from `rated`, anything whose mean_typicality(run) gives {prompt id:
        rating}: people's judgements, or a judge model's ratings (the huse_judge metric)."""
        if not generations or generations[0].run == HUMAN_RUN:
            return ScoreResult(values={})
        items = collect_items(generations, ctx, rated)
        if items is None:
            return ScoreResult(values={})
        if len(items.labels) < NEIGHBOURS + 2:
            logger.info("note: huse: run %s has %d rated texts (with the human ones); HUSE needs at least %d",
                        generations[0].run, len(items.labels), NEIGHBOURS + 2)
            return ScoreResult(values={})
        values = huse_values(items.typicality, items.logprob_per_word, items.labels)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return huse_values(items.typicality[idx], items.logprob_per_word[idx], items.labels[idx], groups=idx)

        return ScoreResult(values=values, ci=bootstrap_ci(statistic, len(items.labels), ctx.resamples, ctx.seed))
