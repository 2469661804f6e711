"""Distinct-n (Li et al. 2016), rep-n and diversity (Su et al. 2022, SimCTG), on token ids.

Also home of the exact, vectorised n-gram counting that Self-BLEU reuses (`ngram_tables`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.records import Generation, ScoreResult
from evalharness.scorers.base import CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci

DISTINCT_ORDERS = (1, 2, 3, 4)
REP_ORDERS = (2, 3, 4)


@dataclass(frozen=True)
class NgramTable:
    """The n-grams of one order over a list of texts, as (text, n-gram, count) triples.

    N-grams never cross text boundaries. N-gram ids are exact (no hashing): two positions get
    the same id iff their n tokens are equal.
    """

    order: int
    text: np.ndarray
    """Text index of each distinct (text, n-gram) pair, sorted by text then n-gram id."""
    gram: np.ndarray
    """N-gram id (0 .. num_grams-1) of each pair."""
    count: np.ndarray
    """How often that n-gram occurs in that text."""
    num_grams: int
    """Number of distinct n-grams over all texts."""
    totals: np.ndarray
    """Per text: number of n-gram positions, max(0, len - order + 1)."""


def ngram_tables(texts: Sequence[Sequence[int]], max_order: int) -> list[NgramTable]:
    """Count the n-grams of orders 1..max_order of every text at once.

    The id of an n-gram at position i is the compact id of the pair (id of the (n-1)-gram at i,
    unigram id at i+n-1): built order by order with np.unique, so ids stay small and exact.
    """
    num_texts = len(texts)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=num_texts)
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(texts), dtype=np.int64, count=total)
    text_of = np.repeat(np.arange(num_texts, dtype=np.int64), lengths)
    ends = np.repeat(np.cumsum(lengths), lengths)  # exclusive end of each position's text
    positions = np.arange(total, dtype=np.int64)
    _, unigram = np.unique(flat, return_inverse=True)
    unigram = unigram.reshape(-1).astype(np.int64)
    num_unigrams = int(unigram.max()) + 1 if total else 0
    tables = []
    prev_ids, prev_pos, prev_num = unigram, positions, num_unigrams
    for order in range(1, max_order + 1):
        if order == 1:
            ids, pos, num = unigram, positions, num_unigrams
        else:
            keep = prev_pos + order - 1 < ends[prev_pos]
            pos = prev_pos[keep]
            if prev_num * max(num_unigrams, 1) >= 2**62:
                raise OverflowError("too many distinct n-grams for exact int64 ids")
            combined = prev_ids[keep] * num_unigrams + unigram[pos + order - 1]
            uniq, ids = np.unique(combined, return_inverse=True)
            ids, num = ids.reshape(-1).astype(np.int64), len(uniq)
        tables.append(_pair_counts(order, text_of[pos], ids, num, lengths, num_texts))
        prev_ids, prev_pos, prev_num = ids, pos, num
    return tables


def _pair_counts(order, text_idx, ids, num, lengths, num_texts) -> NgramTable:
    """Collapse per-position (text, n-gram id) into distinct pairs with their counts."""
    width = max(num, 1)
    keys, counts = np.unique(text_idx * width + ids, return_counts=True)
    totals = np.maximum(lengths - order + 1, 0)
    return NgramTable(order, keys // width, keys % width, counts.astype(np.int64), num, totals)


def distinct_stats(table: NgramTable, weights: np.ndarray) -> tuple[float, float, float]:
    """(corpus-distinct n-grams, sum over texts of per-text distinct n-grams, total n-grams)
    of the corpus in which text t appears weights[t] times (a bootstrap resample)."""
    present = weights[table.text] > 0
    corpus_distinct = np.count_nonzero(np.bincount(table.gram[present], minlength=table.num_grams))
    per_text_distinct = np.bincount(table.text, minlength=len(weights))
    return float(corpus_distinct), float(weights @ per_text_distinct), float(weights @ table.totals)


def distinct_metrics(tables: Sequence[NgramTable], weights: np.ndarray) -> dict[str, float]:
    """distinct_n, rep_n and diversity for orders 1..4 (tables[0] is order 1). Metrics whose
    denominator is zero (no n-grams of that order) are left out."""
    out: dict[str, float] = {}
    kept = {}
    for table in tables:
        corpus_distinct, text_distinct, total = distinct_stats(table, weights)
        if total == 0:
            continue
        if table.order in DISTINCT_ORDERS:
            out[f"distinct_{table.order}"] = corpus_distinct / total
        if table.order in REP_ORDERS:
            kept[table.order] = text_distinct / total
            out[f"rep_{table.order}"] = 100.0 * (1.0 - text_distinct / total)
    if len(kept) == len(REP_ORDERS):
        out["diversity"] = float(np.prod([kept[n] for n in REP_ORDERS]))
    return out


@SCORERS.register("distinct")
@dataclass(frozen=True)
class Distinct(Scorer):
    """Lexical diversity of a run, on token ids (end-of-text dropped: `content_ids`).

    - `distinct_n` (n = 1..4; Li et al. 2016, "A Diversity-Promoting Objective Function for
      Neural Conversation Models"): number of distinct n-grams over the whole run divided by the
      total number of n-grams (n-grams never cross text boundaries). A fraction in [0, 1].
      (Holtzman et al.'s metrics/distinct_n.py counts n-grams seen exactly once instead of
      distinct ones; we use the standard definition.)
    - `rep_n` (n = 2..4; Su et al. 2022, "A Contrastive Framework for Neural Text Generation",
      SimCTG): 100 * (1 - sum over texts of distinct n-grams *within* the text / sum over texts
      of n-grams in the text). In percent, as SimCTG reports it. SimCTG's reference code works
      on whitespace words, skips the last n-gram of each text (`while end_idx < len`) and rounds
      to 2 decimals; we count every n-gram of the token ids and do not round.
    - `diversity` (SimCTG): prod over n = 2..4 of (1 - rep_n / 100), in [0, 1].

    Intervals: the metrics are recomputed on each bootstrap resample of prompts (a prompt drawn
    twice counts its text twice: more total n-grams, no new distinct ones).
    """

    metrics = {
        **{f"distinct_{n}": CLOSER for n in DISTINCT_ORDERS},
        **{f"rep_{n}": CLOSER for n in REP_ORDERS},
        "diversity": CLOSER,
    }

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        tables = ngram_tables([g.content_ids for g in generations], max(DISTINCT_ORDERS))
        n = len(generations)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return distinct_metrics(tables, np.bincount(idx, minlength=n).astype(float))

        values = distinct_metrics(tables, np.ones(n))
        ci = bootstrap_ci(statistic, n, ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci)
