"""The judge: one fixed causal language model that reads every run's text (and the human text)
for the `judge_perplexity` and `judge_typicality` scorers, so that runs of different generators
are measured with the same instrument.

The judge is loaded once per process (per name, device and dtype) and kept. Its inputs are the
*texts* (context text, continuation text), re-tokenised with the judge's own tokenizer: context
and continuation separately, then joined, so that the boundary is in the same place for every
run whatever tokenizer produced the text. Special tokens are not added (the harness tokenises
its contexts the same way, so a judge equal to the generator sees the generator's ids wherever
the text round-trips through its tokenizer).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.generation import models
from evalharness.generation.decoding import teacher_forced_logprobs
from evalharness.records import Generation
from evalharness.scorers.base import ScoringContext
from evalharness.store import fingerprint

logger = logging.getLogger(__name__)

_LOADED: dict[tuple[str, str, str], models.LoadedModel] = {}


def check_judge_options(model, dtype, batch_size) -> None:
    """Option checks shared by the judge scorers (messages name the YAML key)."""
    if not isinstance(model, str) or not model:
        raise UserError("model: name the judge model (a Hugging Face id, a local directory or builtin:<name>), "
                        "e.g. model: builtin:pydocs-gpt2-small")
    if dtype not in models.DTYPES:
        raise UserError(f"dtype: must be one of {', '.join(models.DTYPES)} (got {dtype!r})")
    if type(batch_size) is not int or batch_size < 1:
        raise UserError(f"batch_size: must be a positive integer (got {batch_size!r})")


def preflight_judge(model: str, scorer: str) -> None:
    """Before any generation: the judge must be a builtin, a local folder, or reachable on the Hub."""
    try:
        location, local = models.resolve_location(model)
        if not local:
            models.require_hub_access(location, f"scorers ({scorer}).model")
    except UserError as exc:
        raise UserError(str(exc).replace("model.name:", f"scorers ({scorer}).model:", 1)) from None


def judge_identity(model: str) -> str:
    """What the scores depend on about the judge, without loading it: the weights' fingerprint
    of a local or builtin judge (retrained weights under one name are new scores), else its name."""
    try:
        location, local = models.resolve_location(model)
    except UserError:
        return model
    return models.weights_fingerprint(Path(location)) if local else f"hub:{model}"


def load_judge(model: str, device: str, dtype: str, scorer: str) -> models.LoadedModel:
    """The judge, loaded on the first call and kept for the process (every run reuses it)."""
    key = (model, device, dtype)
    if key not in _LOADED:
        try:
            _LOADED[key] = models.load_model(model, device=device, dtype=dtype)
        except UserError as exc:
            raise UserError(str(exc).replace("model.name:", f"scorers ({scorer}).model:", 1)) from None
        logger.info("judge %s loaded on %s (%s)", model, device, dtype)
    return _LOADED[key]


def context_texts(generations: Sequence[Generation], ctx: ScoringContext) -> list[str]:
    """The context text of each generation's prompt ("" where the experiment did not say)."""
    by_prompt = {h.prompt_id: text for h, text in zip(ctx.human, ctx.context_texts)}
    return [by_prompt.get(g.prompt_id, "") for g in generations]


@dataclass(frozen=True)
class Pieces:
    """One text as the judge reads it: its context's token ids and its continuation's."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


def encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def start_id(tokenizer) -> int:
    """What an empty context becomes: the judge's begin- (or end-) of-text token."""
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def judge_pieces(loaded: models.LoadedModel, contexts: Sequence[str], generations: Sequence[Generation],
                 max_tokens: int | None) -> list[Pieces]:
    """Context and continuation of every text tokenised apart with the judge's tokenizer; a
    continuation that ended with end-of-text gets the judge's end-of-text (as the generator's
    perplexity counts it). Longer than `max_tokens` (default: the judge's positions): the context
    loses its oldest tokens first, then the continuation its last ones (logged)."""
    tokenizer = loaded.tokenizer
    limit = min(x for x in (max_tokens, loaded.max_positions, 1 << 30) if x)
    context_ids = encode(tokenizer, contexts)
    continuation_ids = encode(tokenizer, [g.text for g in generations])
    out, cut = [], 0
    for g, ctx_ids, cont in zip(generations, context_ids, continuation_ids):
        if g.stopped_by_eos and loaded.eos_id is not None:
            cont = cont + [loaded.eos_id]
        ctx_ids = ctx_ids or [start_id(tokenizer)]
        if len(cont) > limit - 1:
            cut += 1
            cont = cont[: limit - 1]
        ctx_ids = ctx_ids[-(limit - len(cont)):]
        out.append(Pieces(tuple(ctx_ids), tuple(cont)))
    if cut:
        logger.warning("judge: %d continuations longer than the judge's %d positions were cut", cut, limit)
    return out


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (sorted, stable), so that little is padded."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded(rows: Sequence[Sequence[int]], pad_id: int, device: str):
    """(input_ids, attention_mask) with right padding: a causal model's states at the real
    positions do not depend on what comes after them."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


@dataclass(frozen=True)
class Pending:
    """A judge's work for one run that is not cached yet: its inputs, their batches (fixed by
    the inputs alone, so any split of them over ranks gives the values of one process) and the
    cache file the assembled values go to."""

    path: Path | None
    inputs: tuple
    batches: tuple[tuple[int, ...], ...]


def pending(path: Path | None, inputs: Sequence, lengths: Sequence[int], batch_size: int) -> Pending:
    return Pending(path, tuple(inputs), tuple(tuple(b) for b in length_batches(lengths, batch_size)))


def batch_nll(loaded: models.LoadedModel, pieces: Sequence[Pieces], batch: Sequence[int]) -> np.ndarray:
    """(len(batch), 2): per text of the batch, the sum of -log p(token | context, earlier tokens)
    over its continuation tokens and their number: one teacher-forced pass, the same one the
    harness scores human text with (generation.decoding.teacher_forced_logprobs)."""
    out = np.zeros((len(batch), 2))
    todo = [row for row, i in enumerate(batch) if pieces[i].continuation]
    if not todo:
        return out
    logprobs = teacher_forced_logprobs(loaded.model, [pieces[batch[r]].context for r in todo],
                                       [pieces[batch[r]].continuation for r in todo], loaded.pad_id, loaded.device)
    for row, values in zip(todo, logprobs):
        out[row] = -math.fsum(values), len(values)
    return out


def assemble(n: int, work: Pending, parts: Sequence[np.ndarray]) -> np.ndarray:
    """Per-batch rows back in input order."""
    out = np.zeros((n, parts[0].shape[1])) if parts else np.zeros((n, 0))
    for batch, rows in zip(work.batches, parts):
        out[list(batch)] = rows
    return out


def run_pending(work: Pending, compute) -> list[np.ndarray]:
    """Every batch of `work` in this process (the torchrun path shares them out instead)."""
    return [compute(batch) for batch in work.batches]


def cache_path(ctx: ScoringContext, kind: str, identity: dict, run: str) -> Path | None:
    """ctx.cache_dir/judge/<kind>/<run>-<hash of everything the values depend on>.json"""
    if ctx.cache_dir is None:
        return None
    safe_run = "".join(c if c.isalnum() or c in "._=-" else "_" for c in run)
    return Path(ctx.cache_dir) / "judge" / kind / f"{safe_run}-{fingerprint(identity)}.json"
