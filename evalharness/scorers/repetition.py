"""Repetition at the end of a text, as flagged by Holtzman et al. 2019 (code rule and caption rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import Generation, ScoreResult
from evalharness.scorers.base import CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci


def tail_repeats(tokens: Sequence[int], n: int) -> int:
    """How many times the final n-gram occurs back to back at the end of `tokens` (>= 1, also
    when the text is shorter than n: the paper's loop starts its count at 1)."""
    tokens = tuple(tokens)
    last = tokens[max(len(tokens) - n, 0):]
    count = 1
    while n * (count + 1) <= len(tokens) and tokens[len(tokens) - n * (count + 1): len(tokens) - n * count] == last:
        count += 1
    return count


def is_repeating_code_rule(tokens: Sequence[int], max_n: int = 90) -> bool:
    """Holtzman et al.'s metrics/repetition.py: for n = 1..max_n count the back-to-back repeats
    of the final n-gram; take the n with the most repeats (on ties the *smallest* such n, as
    Python's max over range(max_n) returns the first maximum); repeating iff that count > 1 and
    (n >= 3 or count > 50). An empty text is not repeating (the script would crash on it)."""
    if not tokens:
        return False
    counts = [tail_repeats(tokens, n) for n in range(1, max_n + 1)]
    best = int(np.argmax(counts))  # first maximum = smallest n
    n, count = best + 1, counts[best]
    return count > 1 and (n >= 3 or count > 50)


def is_repeating_caption_rule(tokens: Sequence[int], min_phrase: int = 2, min_repeats: int = 3) -> bool:
    """The rule stated in the paper's Table 1 caption: some phrase of >= 2 tokens occurs >= 3
    times back to back at the very end of the text (no upper bound on the phrase length)."""
    longest = len(tokens) // min_repeats
    return any(tail_repeats(tokens, n) >= min_repeats for n in range(min_phrase, longest + 1))


@SCORERS.register("repetition")
@dataclass(frozen=True)
class Repetition(Scorer):
    """Share of texts that end in a repetition loop (Holtzman et al. 2019, "The Curious Case of
    Neural Text Degeneration", Table 1), on token ids with the trailing end-of-text dropped.

    - `repetition`: the rule of the authors' code (metrics/repetition.py): for n = 1..max_n
      (default 90) count how many times the final n-gram repeats back to back at the end; take
      the n with the most repeats (ties: the smallest n); the text repeats iff that count > 1
      and (n >= 3 or count > 50). Note a text ending in one token repeated 2..50 times is *not*
      flagged (n = 1 has the most repeats but is < 3).
    - `repetition_paper`: the rule of the paper's caption: a phrase of >= 2 tokens repeated
      >= 3 times at the end.

    Both are fractions in [0, 1] (the paper prints percentages). Per text 0/1 values are
    returned, and the interval bootstraps their mean over prompts.
    """

    max_n: int = 90

    metrics = {"repetition": CLOSER, "repetition_paper": CLOSER}
    libraries = ("numpy",)  # numpy: arithmetic and the bootstrap's generator

    def __post_init__(self) -> None:
        if isinstance(self.max_n, bool) or not isinstance(self.max_n, int) or self.max_n < 1:
            raise UserError(f"max_n: must be an integer >= 1 (got {self.max_n!r})")

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        code = np.array([is_repeating_code_rule(g.content_ids, self.max_n) for g in generations], dtype=float)
        caption = np.array([is_repeating_caption_rule(g.content_ids) for g in generations], dtype=float)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {"repetition": float(code[idx].mean()), "repetition_paper": float(caption[idx].mean())}

        if not generations:
            return ScoreResult(values={})
        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci, per_sample={"repetition": tuple(code), "repetition_paper": tuple(caption)})
