"""Perplexity of every run's text under one fixed judge model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import Generation, ScoreResult
from evalharness.scorers import judge, served_judge
from evalharness.scorers.base import CLOSER, SCORERS, Scorer, ScoringContext, bootstrap_ci
from evalharness.scorers.perplexity import pooled_perplexity
from evalharness.store import read_json, write_json


@SCORERS.register("judge_perplexity")
@dataclass(frozen=True)
class JudgePerplexity(Scorer):
    """Perplexity under one fixed judge model (Holtzman et al. 2019's pooled perplexity, one scorer model for all).

    Decoding papers since 2022 (e.g. Su & Collier 2022, Contrastive Search Is What You Need)
    score every generator's text with one judge model, so that runs of different generators
    can be set side by side; the human continuations are scored the same way (the reference).

    `judge_perplexity` = exp(sum of -log p_judge(y_t | context, y_<t) / number of tokens), pooled
    over every continuation token of every text of the run (Holtzman et al.'s pooling), where the
    context and the continuation are the *texts*, each tokenised with the judge's tokenizer
    (separately, then joined: the boundary is the same for every run), end-of-text appended and
    scored when the continuation ended with it. Per-text values exp(mean NLL of the text) are
    kept; interval: the pooled ratio recomputed on each bootstrap resample of prompts.

    Options: `model` (the judge: Hugging Face id, local directory or builtin:<name>), `dtype`,
    `batch_size` (texts per forward pass), `max_tokens` (longest context + continuation; default
    the judge's positions; the context is cut from the left first)."""

    model: str | None = None
    dtype: str = "float32"
    batch_size: int = 8
    max_tokens: int | None = None
    metrics = {"judge_perplexity": CLOSER}

    def __post_init__(self) -> None:
        judge.check_judge_options(self.model, self.dtype, self.batch_size)
        if served_judge.is_served(self.model):
            raise UserError("model: judge_perplexity needs the judge's weights (a Hugging Face id, a local directory "
                            "or builtin:<name>); a served judge gives no log-probabilities of given text")
        if self.max_tokens is not None and (type(self.max_tokens) is not int or self.max_tokens < 2):
            raise UserError(f"max_tokens: must be an integer >= 2 or null (got {self.max_tokens!r})")

    def inputs_fingerprint(self, ctx: ScoringContext) -> str | None:
        """The judge's weights: cached scores are recomputed when they change."""
        return judge.judge_identity(self.model)

    def preflight(self) -> None:
        judge.preflight_judge(self.model, self.name)

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if not generations:
            return ScoreResult(values={})
        sums, counts = self.nll(generations, ctx)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {"judge_perplexity": pooled_perplexity(sums[idx], counts[idx])}

        with np.errstate(divide="ignore", invalid="ignore"):
            per_text = np.where(counts > 0, np.exp(sums / np.maximum(counts, 1)), np.nan)
        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci, per_sample={"judge_perplexity": tuple(float(v) for v in per_text)})

    def nll(self, generations: Sequence[Generation], ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray]:
        """Per-text (NLL sum, token count) under the judge, read from the cache when the judge,
        the contexts and the texts are the same as when it was written (under torchrun every
        rank has computed a share of it by then: evalharness.experiment.scoring.share_judging)."""
        path = self.cache_file(generations, ctx)
        if path is not None and path.is_file():
            cached = read_json(path)
            return np.asarray(cached["nll"], dtype=float), np.asarray(cached["tokens"], dtype=float)
        work = self.pending(generations, ctx)
        values = self.finish(work, judge.run_pending(work, lambda batch: self.compute(work, batch, ctx)))
        return values[:, 0], values[:, 1]

    def cache_file(self, generations: Sequence[Generation], ctx: ScoringContext):
        loaded = judge.load_judge(self.model, ctx.device, self.dtype, self.name)
        identity = {"judge": self.model, "weights": loaded.fingerprint, "dtype": self.dtype,
                    "max_tokens": self.max_tokens, "contexts": judge.context_texts(generations, ctx),
                    "texts": [[g.text, g.stopped_by_eos] for g in generations]}
        return judge.cache_path(ctx, "nll", identity, generations[0].run)

    def pending(self, generations: Sequence[Generation], ctx: ScoringContext) -> judge.Pending | None:
        """The run's texts as the judge reads them, in batches; None when they are cached."""
        path = self.cache_file(generations, ctx)
        if path is not None and path.is_file():
            return None
        loaded = judge.load_judge(self.model, ctx.device, self.dtype, self.name)
        pieces = judge.judge_pieces(loaded, judge.context_texts(generations, ctx), generations, self.max_tokens)
        lengths = [len(p.context) + len(p.continuation) for p in pieces]
        return judge.pending(path, pieces, lengths, self.batch_size)

    def compute(self, work: judge.Pending, batch, ctx: ScoringContext) -> np.ndarray:
        loaded = judge.load_judge(self.model, ctx.device, self.dtype, self.name)
        return judge.batch_nll(loaded, work.inputs, batch)

    def finish(self, work: judge.Pending, parts) -> np.ndarray:
        """(n, 2) NLL sums and token counts, written to the cache."""
        values = judge.assemble(len(work.inputs), work, parts)
        if work.path is not None:
            work.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(work.path, {"nll": values[:, 0].tolist(), "tokens": values[:, 1].tolist()})
        return values
