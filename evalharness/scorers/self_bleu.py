"""Self-BLEU (Zhu et al. 2018, Texygen), exactly as NLTK computes it, but for all hypotheses at once."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import Generation, ScoreResult
from evalharness.scorers.base import (
    CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci, check_keep_eos, counted_ids,
)
from evalharness.scorers.distinct import NgramTable, ngram_tables

MAX_ORDER = 10
EPSILON = 0.1
"""SmoothingFunction().method1: a precision with zero matches becomes EPSILON / denominator."""


def clipped_matches(table: NgramTable, num_texts: int) -> np.ndarray:
    """Per text t: sum over its n-grams g of min(count_t(g), max over texts u != t of count_u(g)).

    That is NLTK's modified-precision numerator of t against all *other* texts. Per n-gram we
    keep the top two counts across texts: the max over the others is the top count unless t is
    the text holding it, then it is the second count (equal to the top one on ties).
    """
    order = np.lexsort((-table.count, table.gram))
    gram, count, text = table.gram[order], table.count[order], table.text[order]
    starts = np.flatnonzero(np.r_[True, gram[1:] != gram[:-1]]) if gram.size else gram
    top1 = np.zeros(table.num_grams, dtype=np.int64)
    top1_text = np.full(table.num_grams, -1, dtype=np.int64)
    top2 = np.zeros(table.num_grams, dtype=np.int64)
    top1[gram[starts]] = count[starts]
    top1_text[gram[starts]] = text[starts]
    second = starts + 1
    has_second = second < gram.size
    has_second[has_second] = gram[second[has_second]] == gram[starts[has_second]]
    top2[gram[starts[has_second]]] = count[second[has_second]]
    g = table.gram
    others_max = np.where(table.text == top1_text[g], top2[g], top1[g])
    clipped = np.minimum(table.count, others_max)
    return np.bincount(table.text, weights=clipped, minlength=num_texts).astype(np.int64)


def closest_other_length(lengths: np.ndarray) -> np.ndarray:
    """Per text: the length of the closest *other* text, ties going to the shorter one
    (NLTK's closest_ref_length over all other texts). Needs at least two texts."""
    values, counts = np.unique(lengths, return_counts=True)
    i = np.searchsorted(values, lengths)
    below = np.where(i > 0, values[np.maximum(i - 1, 0)], -np.inf)
    above = np.where(i + 1 < values.size, values[np.minimum(i + 1, values.size - 1)], np.inf)
    nearest = np.where(lengths - below <= above - lengths, below, above)
    return np.where(counts[i] > 1, lengths, nearest).astype(np.int64)


def bleu_from_counts(matches: Sequence[int], denominators: Sequence[int], hyp_len: int, ref_len: int) -> float:
    """NLTK sentence_bleu with method1 smoothing and uniform weights 1/k, k = len(matches),
    from the clipped match counts and n-gram denominators (max(1, #n-grams)) of orders 1..k.
    Same float operations in the same order as NLTK, so results agree to the last bit or so."""
    if matches[0] == 0:
        return 0.0
    weight = 1.0 / len(matches)
    logs = [
        weight * math.log(int(m) / int(d) if m != 0 else EPSILON / int(d))
        for m, d in zip(matches, denominators)
    ]
    if hyp_len > ref_len:
        penalty = 1.0
    elif hyp_len == 0:
        penalty = 0.0
    else:
        penalty = math.exp(1 - ref_len / hyp_len)
    return penalty * math.exp(math.fsum(logs))


def self_bleu_scores(
    texts: Sequence[Sequence[int]], orders: Sequence[int], hypotheses: Sequence[int] | None = None
) -> dict[int, np.ndarray]:
    """Per-hypothesis BLEU-k for each k in `orders`: each hypothesis text (indices into
    `texts`; default all) against all *other* texts as references.

    Equals, for every hypothesis h and order k,
    nltk.translate.bleu_score.sentence_bleu(texts[:h] + texts[h+1:], texts[h],
    weights=(1/k,)*k, smoothing_function=SmoothingFunction().method1).
    """
    if len(texts) < 2:
        raise ValueError("Self-BLEU needs at least two texts")
    hyps = np.arange(len(texts)) if hypotheses is None else np.asarray(hypotheses, dtype=np.int64)
    tables = ngram_tables(texts, max(orders))
    matches = np.stack([clipped_matches(t, len(texts)) for t in tables], axis=1)
    denominators = np.stack([np.maximum(t.totals, 1) for t in tables], axis=1)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    ref_lengths = closest_other_length(lengths)
    out = {}
    for k in orders:
        out[k] = np.array(
            [
                bleu_from_counts(matches[h, :k].tolist(), denominators[h, :k].tolist(),
                                 int(lengths[h]), int(ref_lengths[h]))
                for h in hyps
            ],
            dtype=float,
        )
    return out


def sample_hypotheses(num_texts: int, max_hypotheses: int | None, seed: int) -> list[int] | None:
    """The paper's protocol: `random.seed(seed); random.sample(range(n), max_hypotheses)`.
    None (all texts) when max_hypotheses is None or not smaller than n."""
    if max_hypotheses is None or max_hypotheses >= num_texts:
        return None
    return random.Random(seed).sample(range(num_texts), max_hypotheses)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@SCORERS.register("self_bleu")
@dataclass(frozen=True)
class SelfBleu(Scorer):
    """Self-BLEU (Zhu et al. 2018, "Texygen"), as used by Holtzman et al. 2019 (Table 1).

    Each generation of the run is a hypothesis scored with BLEU against *all other* generations
    of the run as references; `self_bleu` is the mean over hypotheses. BLEU is exactly NLTK's
    `sentence_bleu(references, hypothesis, weights=(1/n,)*n,
    smoothing_function=SmoothingFunction().method1)` on token ids (`content_ids`, end-of-text
    dropped; `keep_eos: true` keeps it, as the authors' script does on gen.py's `tokens`):
    modified precisions p_k = (clipped matches) / max(1, #k-grams of the hypothesis),
    a zero p_k replaced by 0.1 / max(1, #k-grams); BLEU = 0 when no unigram matches; brevity
    penalty from the closest other length (ties -> the shorter), 0 for an empty hypothesis.
    Computed for all hypotheses at once from n-gram count tables (agrees with the NLTK loop to
    <= 1e-9 per hypothesis, and is orders of magnitude faster).

    Options: `n` (BLEU-n of `self_bleu`, default 4), `orders` (extra orders, each emitted as
    `self_bleu_<k>`), `max_hypotheses` (score only that many hypotheses, drawn with
    `random.Random(seed).sample`, references still all other generations: the paper's
    1,000-sample protocol with seed 0; the paper's script draws a fresh sample for each order,
    we use one sample for all orders), `seed`, `keep_eos` (default false).

    Interval: per-hypothesis scores are computed once against the full set of references; each
    bootstrap resample of prompts averages the per-hypothesis scores of the resampled prompts
    (with max_hypotheses, of those among them that were scored). The references are not
    resampled, so the interval reflects the choice of hypotheses, not of references.
    """

    n: int = 4
    orders: tuple[int, ...] = ()
    max_hypotheses: int | None = None
    seed: int = 0
    keep_eos: bool = False

    metrics = {"self_bleu": CLOSER, **{f"self_bleu_{k}": CLOSER for k in range(1, MAX_ORDER + 1)}}
    libraries = ("numpy",)  # numpy: arithmetic and the bootstrap's generator

    def __post_init__(self) -> None:
        if not _is_int(self.n) or not 1 <= self.n <= MAX_ORDER:
            raise UserError(f"n: must be an integer in 1..{MAX_ORDER} (got {self.n!r})")
        if not isinstance(self.orders, (list, tuple)) or not all(
            _is_int(k) and 1 <= k <= MAX_ORDER for k in self.orders
        ):
            raise UserError(
                f"orders: must be a list of integers in 1..{MAX_ORDER} (got {self.orders!r})"
            )
        object.__setattr__(self, "orders", tuple(dict.fromkeys(int(k) for k in self.orders)))
        if self.max_hypotheses is not None and (not _is_int(self.max_hypotheses) or self.max_hypotheses < 2):
            raise UserError(
                f"max_hypotheses: must be an integer >= 2 or null (got {self.max_hypotheses!r})"
            )
        if not _is_int(self.seed):
            raise UserError(f"seed: must be an integer (got {self.seed!r})")
        check_keep_eos(self.keep_eos)
        emitted = {"self_bleu": CLOSER, **{f"self_bleu_{k}": CLOSER for k in self.orders}}
        object.__setattr__(self, "metrics", emitted)  # the exact names this instance emits

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        n = len(generations)
        if n < 2:
            return ScoreResult(values={})
        hyps = sample_hypotheses(n, self.max_hypotheses, self.seed)
        names = {"self_bleu": self.n, **{f"self_bleu_{k}": k for k in self.orders}}
        texts = [counted_ids(g, self.keep_eos) for g in generations]
        scores = self_bleu_scores(texts, sorted(set(names.values())), hyps)
        per_prompt = {}
        for name, k in names.items():
            full = np.full(n, np.nan)
            full[np.arange(n) if hyps is None else hyps] = scores[k]
            per_prompt[name] = full

        def statistic(idx: np.ndarray) -> dict[str, float]:
            out = {}
            for name, values in per_prompt.items():
                chosen = values[idx]
                chosen = chosen[~np.isnan(chosen)]
                out[name] = float(chosen.mean()) if chosen.size else float("nan")
            return out

        values = {name: float(np.mean(scores[k])) for name, k in names.items()}
        ci = bootstrap_ci(statistic, n, ctx.resamples, ctx.seed)
        per_sample = {} if hyps is not None else {name: tuple(v) for name, v in per_prompt.items()}
        return ScoreResult(values=values, ci=ci, per_sample=per_sample)
