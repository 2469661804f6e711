"""A judge model asked the people's question: how typical is this text, on the people's 1-6 scale."""

from __future__ import annotations

import json
import logging
import string
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import (HUMAN_RUN, TYPICALITY_INSTRUCTIONS, TYPICALITY_SCALE, Generation, ScoreResult)
from evalharness.scorers import judge
from evalharness.scorers import judgements as judgements_file
from evalharness.scorers import served_judge
from evalharness.scorers.base import CLOSER, HIGHER, SCORERS, Scorer, ScoringContext, bootstrap_ci
from evalharness.scorers.huse import Huse
from evalharness.store import ResultsDir, finite_or_named, fingerprint, read_json, write_atomic, write_json

logger = logging.getLogger(__name__)

RATINGS_FILE = "judge_typicality.jsonl"
VALUES = np.array([value for value, _, _ in TYPICALITY_SCALE], dtype=float)
DEFAULT_TEMPLATE = ("{instructions}\n\nThe scale:\n{scale}\n\nText:\n{text}\n\n"
                    "How typical is this text? Answer with one number from 1 to 6.\nRating:")
FIELDS = {"instructions", "scale", "text", "context"}
_MEMO: dict[str, tuple[np.ndarray, np.ndarray]] = {}
"""Ratings already computed in this process (a run's ratings serve its row and the pooled agreement)."""
HUSE_NAMES = {"huse": "huse_judge", "huse_q": "huse_judge_q", "huse_d": "huse_judge_d"}


def scale_text() -> str:
    """The scale as the annotation pages list it: "1 Invalid: not real text: ..."."""
    return "\n".join(f"{value} {label}: {help_text}" for value, label, help_text in TYPICALITY_SCALE)


def check_template(template) -> None:
    if not isinstance(template, str):
        raise UserError(f"template: must be a string with {{text}} in it (got {template!r})")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UserError(f"template: not a valid format string ({exc}); write literal braces as {{{{ }}}}") from None
    if "text" not in names or not names <= FIELDS:
        raise UserError(f"template: must contain {{text}} and no fields but {', '.join(sorted(FIELDS))} "
                        f"(got {', '.join(sorted(names)) or 'none'})")


def filled(template: str, text: str, context: str) -> str:
    return template.format(instructions=TYPICALITY_INSTRUCTIONS, scale=scale_text(), text=text, context=context)


def prompt_ids(tokenizer, template: str, text: str, context: str) -> list[int]:
    """The judge's input: the filled template, as the only user message of the model's chat
    template when it has one (the rating is then the assistant's first token), else as plain
    text with the tokenizer's own special tokens."""
    content = filled(template, text, context)
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(chat, add_special_tokens=False)["input_ids"])
    return list(tokenizer(content)["input_ids"])


def rating_token_ids(tokenizer) -> list[list[int]]:
    """For each rating 1..6, the judge's single tokens that say it ("5" and " 5" where each is
    one token): a rating's probability is the sum of theirs."""
    out = []
    for value in VALUES.astype(int):
        ids = {pieces[0] for pieces in (tokenizer.encode(form, add_special_tokens=False)
                                        for form in (f"{value}", f" {value}")) if len(pieces) == 1}
        if not ids:
            raise UserError(f"scorers (judge_typicality).model: the judge's tokenizer has no single token for {value}")
        out.append(sorted(ids))
    return out


def batch_ratings(loaded, prompts: Sequence[list[int]], batch: Sequence[int]) -> np.ndarray:
    """(len(batch), 6): the next-token probability of each rating after each prompt of the batch."""
    import torch

    choices = rating_token_ids(loaded.tokenizer)
    ids, attention = judge.padded([prompts[i] for i in batch], loaded.pad_id, loaded.device)
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids, attention_mask=attention).logits
    last = torch.tensor([len(prompts[i]) - 1 for i in batch], device=logits.device)
    next_token = torch.softmax(logits[torch.arange(len(batch), device=logits.device), last].double(), dim=-1)
    return torch.stack([next_token[:, c].sum(-1) for c in choices], dim=1).cpu().numpy()


def normalised(per_rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities renormalised over the six ratings, the share of the next-token probability
    the six got: how well the judge keeps to the answer format)."""
    mass = per_rating.sum(1)
    if np.any(mass <= 0):  # a served judge whose top tokens held no rating: no rating for that text
        logger.warning("judge_typicality: %d texts got no probability on any rating; left out", int(np.sum(mass <= 0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass[:, None] > 0, per_rating / np.where(mass > 0, mass, 1)[:, None], np.nan), mass


def agreement(judge_ratings: np.ndarray, people: np.ndarray) -> dict[str, float]:
    """Spearman's rho and Kendall's tau-b (scipy) between the judge's and people's ratings."""
    from scipy.stats import kendalltau, spearmanr

    return {"judge_agreement_spearman": float(spearmanr(judge_ratings, people).statistic),
            "judge_agreement_kendall": float(kendalltau(judge_ratings, people).statistic)}


@dataclass(frozen=True)
class JudgeRatings:
    """The judge's expected ratings in the shape HUSE reads people's judgements in."""

    by_run: dict[str, dict[str, float]]

    def mean_typicality(self, run: str) -> dict[str, float]:
        return dict(self.by_run.get(run, {}))


@SCORERS.register("judge_typicality")
@dataclass(frozen=True)
class JudgeTypicality(Scorer):
    """A judge model rates typicality on the people's 1-6 scale (Holtzman et al. 2019; rating tokens as in G-Eval, Liu et al. 2023).

    A language model as a rater of typicality, on the people's question and scale (the
    annotation page's instructions and Holtzman et al.'s 1-6 MTurk scale, from one source,
    evalharness.records), in the manner of LLM-as-a-judge scoring with rating-token
    probabilities (G-Eval: Liu et al. 2023). The judge reads the filled `template` (default:
    the instructions, the scale, the text, the question; as the only user message of its chat
    template when it has one); p(r) = the next-token probability of the rating r in 1..6
    (summed over its single-token spellings, renormalised over the six).

    - `judge_typicality`: mean over texts of the expected rating sum_r r p(r); interval: bootstrap
      over prompts. `judge_typicality_argmax`: mean of argmax_r p(r).
    - With judgements.csv (people's ratings): `people_typicality`, the mean people's rating of
      the run's rated texts, beside it; on the human row, `judge_agreement_spearman` and
      `judge_agreement_kendall`: Spearman's rho and Kendall's tau-b (scipy) between the judge's
      expected rating and the mean people's rating, pooled over every rated text of every run,
      with a bootstrap interval over those texts; on the other rows `huse_judge` (and `_q`,
      `_d`): HUSE computed by the `huse` scorer's code on the same rated texts with the judge's
      expected ratings in place of people's -- a proxy, not HUSE.

    Per-text ratings: <run>/judge_typicality.jsonl. Options: `model` (the judge: a Hugging Face
    id, local directory, builtin:<name>, or openai-compatible:URL#MODEL for a served judge,
    evalharness.scorers.served_judge, with `api_key_env` and `timeout`), `template` (fields
    {instructions}, {scale}, {text}, {context}), `dtype`, `batch_size`, `judgements` (path;
    default judgements.csv in the results folder)."""

    model: str | None = None
    template: str = DEFAULT_TEMPLATE
    dtype: str = "float32"
    batch_size: int = 8
    judgements: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    metrics = {"judge_typicality": CLOSER, "judge_typicality_argmax": CLOSER, "people_typicality": CLOSER,
               "judge_agreement_spearman": HIGHER, "judge_agreement_kendall": HIGHER,
               "huse_judge": HIGHER, "huse_judge_q": HIGHER, "huse_judge_d": HIGHER}

    def __post_init__(self) -> None:
        judge.check_judge_options(self.model, self.dtype, self.batch_size)
        check_template(self.template)
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise UserError(f"api_key_env: must name an environment variable (got {self.api_key_env!r})")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise UserError(f"timeout: must be a number of seconds > 0 (got {self.timeout!r})")
        if served_judge.is_served(self.model):
            self.served()
        if self.judgements is not None and (not isinstance(self.judgements, str) or not self.judgements):
            raise UserError(f"judgements: must be the path of a CSV file (got {self.judgements!r})")

    def preflight(self) -> None:
        if not served_judge.is_served(self.model):
            judge.preflight_judge(self.model, self.name)

    def served(self) -> served_judge.ServedJudge:
        return served_judge.ServedJudge.parse(self.model, self.api_key_env, self.timeout)

    def inputs_fingerprint(self, ctx: ScoringContext) -> str | None:
        """The judge's weights, and people's judgements (they change the agreement and huse_judge):
        cached scores are recomputed when either changes."""
        judge_part = self.model if served_judge.is_served(self.model) else judge.judge_identity(self.model)
        if ctx.results_dir is None and not self.judgements:
            return judge_part
        return judge_part + ":" + judgements_file.fingerprint(judgements_file.location(ctx.results_dir, self.judgements))

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if not generations:
            return ScoreResult(values={})
        probabilities = self.ratings(generations, ctx)
        expected = probabilities @ VALUES
        argmax = np.where(np.isnan(expected), np.nan, VALUES[np.argmax(np.nan_to_num(probabilities, nan=0.0), axis=1)])

        def statistic(idx: np.ndarray) -> dict[str, float]:
            rated = idx[~np.isnan(expected[idx])]
            if not len(rated):
                return {}
            return {"judge_typicality": float(expected[rated].mean()),
                    "judge_typicality_argmax": float(argmax[rated].mean())}

        values = statistic(np.arange(len(generations)))
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed)
        result = ScoreResult(values=values, ci=ci, per_sample={"judge_typicality": tuple(expected.tolist())})
        people = self.people(ctx)
        return result if people is None else self.with_people(result, generations, ctx, people)

    def ratings(self, generations: Sequence[Generation], ctx: ScoringContext) -> np.ndarray:
        """(n, 6) rating probabilities of the run's texts (cached; under torchrun computed by
        every rank by then, evalharness.experiment.scoring.share_judging), written to the run's
        judge_typicality.jsonl."""
        path, memo_key = self.cache_file(generations, ctx)
        if memo_key in _MEMO:
            probabilities, mass = _MEMO[memo_key]
        elif path is not None and path.is_file():
            cached = read_json(path)
            probabilities = np.asarray(finite_or_named(cached["probabilities"]), dtype=float)  # "nan": no rating
            mass = np.asarray(cached["rating_mass"], dtype=float)
        elif served_judge.is_served(self.model):
            contexts = judge.context_texts(generations, ctx)
            per_rating = self.served().rating_probabilities([filled(self.template, g.text, c)
                                                             for g, c in zip(generations, contexts)])
            probabilities, mass = self.save(path, per_rating)
        else:
            work = self.pending(generations, ctx, force=True)
            probabilities, mass = self.finish(work, judge.run_pending(work, lambda b: self.compute(work, b, ctx)))
        _MEMO[memo_key] = probabilities, mass
        self.write_ratings(generations, ctx, probabilities, mass)
        return probabilities

    def cache_file(self, generations: Sequence[Generation], ctx: ScoringContext):
        weights = "served" if served_judge.is_served(self.model) else \
            judge.load_judge(self.model, ctx.device, self.dtype, self.name).fingerprint
        identity = {"judge": self.model, "weights": weights, "dtype": self.dtype, "template": self.template,
                    "contexts": judge.context_texts(generations, ctx), "texts": [g.text for g in generations]}
        return judge.cache_path(ctx, "typicality", identity, generations[0].run), fingerprint(identity)

    def pending(self, generations: Sequence[Generation], ctx: ScoringContext, force: bool = False):
        """The run's filled prompts, in batches; None when they are cached (unless `force`)."""
        if served_judge.is_served(self.model) and not force:
            return None  # requests to a server: rank 0 sends them while scoring
        path, _ = self.cache_file(generations, ctx)
        if not force and path is not None and path.is_file():
            return None
        loaded = judge.load_judge(self.model, ctx.device, self.dtype, self.name)
        contexts = judge.context_texts(generations, ctx)
        prompts = [prompt_ids(loaded.tokenizer, self.template, g.text, c) for g, c in zip(generations, contexts)]
        self.check_lengths(prompts, loaded)
        return judge.pending(path, prompts, [len(p) for p in prompts], self.batch_size)

    def compute(self, work: judge.Pending, batch, ctx: ScoringContext) -> np.ndarray:
        loaded = judge.load_judge(self.model, ctx.device, self.dtype, self.name)
        return batch_ratings(loaded, work.inputs, batch)

    def finish(self, work: judge.Pending, parts) -> tuple[np.ndarray, np.ndarray]:
        return self.save(work.path, judge.assemble(len(work.inputs), work, parts))

    @staticmethod
    def save(path, per_rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised probabilities and rating mass, written to the cache file `path`."""
        probabilities, mass = normalised(per_rating)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"probabilities": probabilities.tolist(), "rating_mass": mass.tolist()})
        return probabilities, mass

    def check_lengths(self, prompts: Sequence[list[int]], loaded) -> None:
        longest = max(len(p) for p in prompts)
        if loaded.max_positions and longest > loaded.max_positions:
            raise UserError(f"scorers (judge_typicality).template: a filled prompt has {longest} tokens, more than "
                            f"the judge's {loaded.max_positions} positions; use a shorter template or a judge "
                            "with a longer context")

    def write_ratings(self, generations, ctx: ScoringContext, probabilities: np.ndarray, mass: np.ndarray) -> None:
        if ctx.results_dir is None:
            return
        rated = ~np.isnan(probabilities).any(axis=1)
        lines = [{"prompt_id": g.prompt_id, "expected": float(p @ VALUES) if ok else None,
                  "argmax": int(VALUES[np.argmax(p)]) if ok else None,
                  "probabilities": [float(x) for x in p] if ok else None, "rating_mass": float(m)}
                 for g, p, m, ok in zip(generations, probabilities, mass, rated)]
        path = ResultsDir(ctx.results_dir).run_dir(generations[0].run) / RATINGS_FILE
        write_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))

    def people(self, ctx: ScoringContext):
        """People's judgements when the file exists (none: the judge's ratings stand alone)."""
        if ctx.results_dir is None and not self.judgements:
            return None
        path = judgements_file.location(ctx.results_dir, self.judgements)
        if not path.is_file():
            return None
        return judgements_file.load(path, ctx.runs, tuple(h.prompt_id for h in ctx.human))

    def with_people(self, result: ScoreResult, generations, ctx: ScoringContext, people) -> ScoreResult:
        run = generations[0].run
        rated = people.mean_typicality(run)
        values, ci = dict(result.values), dict(result.ci)
        if rated:
            values["people_typicality"] = float(np.mean(list(rated.values())))
        if run == HUMAN_RUN:
            found = self.pooled_agreement(ctx, people)
            values.update(found.values)
            ci.update(found.ci)
        else:
            huse = self.huse_judge(generations, ctx, people)
            values.update({HUSE_NAMES[k]: v for k, v in huse.values.items()})
            ci.update({HUSE_NAMES[k]: v for k, v in huse.ci.items()})
        return ScoreResult(values=values, ci=ci, per_sample=result.per_sample)

    def judge_expected(self, run: str, ctx: ScoringContext) -> dict[str, float]:
        """prompt id -> the judge's expected rating of the run's text (rated and cached on first use)."""
        if run == HUMAN_RUN:
            generations = list(ctx.human)
        else:
            by_id = ResultsDir(ctx.results_dir).read_generations(run)
            generations = [by_id[h.prompt_id] for h in ctx.human]
        probabilities = self.ratings(generations, ctx)
        return {g.prompt_id: float(p @ VALUES) for g, p in zip(generations, probabilities) if not np.isnan(p).any()}

    def huse_judge(self, generations, ctx: ScoringContext, people) -> ScoreResult:
        """HUSE by the huse scorer's code, on the texts people rated, with the judge's ratings."""
        by_run = {}
        for run in (HUMAN_RUN, generations[0].run):
            judged = self.judge_expected(run, ctx)
            by_run[run] = {pid: judged[pid] for pid in people.mean_typicality(run) if pid in judged}
        return Huse().score_rated(generations, ctx, JudgeRatings(by_run))

    def pooled_agreement(self, ctx: ScoringContext, people) -> ScoreResult:
        """Judge vs people over every rated text of every run, with a bootstrap interval over texts."""
        pairs = []
        for run in ctx.runs:
            rated = people.mean_typicality(run)
            if rated:
                judged = self.judge_expected(run, ctx)
                pairs += [(judged[pid], rating) for pid, rating in sorted(rated.items()) if pid in judged]
        if len(pairs) < 3:
            return ScoreResult(values={})
        judged, rated = (np.array(column) for column in zip(*pairs))
        values = agreement(judged, rated)
        ci = bootstrap_ci(lambda idx: agreement(judged[idx], rated[idx]), len(pairs), ctx.resamples, ctx.seed)
        return ScoreResult(values=values, ci=ci)
