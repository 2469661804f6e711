"""The batched decoding loop: left padding, KV cache, one seeded RNG per prompt, log-probs.

Contract: the continuation of prompt i depends only on (model, context, sampler, seed of i),
not on the batch size or the other prompts in the batch. Each row owns a torch.Generator
seeded from (experiment seed, prompt id, run name) and uses exactly one uniform number per
step (drawn up front, the same numbers), turned into a token by inverse-CDF sampling in float64.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import torch

if TYPE_CHECKING:  # samplers import this module for their own loops
    from evalharness.samplers.base import Sampler


@dataclass
class Continuation:
    """What decoding produced for one prompt (before it becomes a Generation record)."""

    token_ids: list[int]
    logprobs_model: list[float]
    logprobs_sampler: list[float]
    stopped_by_eos: bool


def row_seed(seed: int, prompt_id: str, run: str) -> int:
    """A 63-bit seed that depends on nothing but the experiment seed, prompt and run."""
    digest = hashlib.sha256(f"{seed}\x00{prompt_id}\x00{run}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows so the last real token of every row sits in the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding (GPT-2 would otherwise count the pads)."""
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


def draw_uniforms(seeds: Sequence[int], steps: int, device: str) -> torch.Tensor:
    """(rows, steps) float64 uniforms: row i holds the first `steps` draws of its own generator.
    Drawn up front, they are exactly the numbers one draw per step would give (the CPU
    generator fills a tensor in sequence; tested), and the loop needs no host work per step."""
    rows = [torch.rand((steps,), generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    return torch.stack(rows).to(device) if rows else torch.zeros((0, steps), dtype=torch.float64, device=device)


def inverse_cdf_sample(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row from exp(logprobs), using the row's uniform number u.

    (1 - u) lies in (0, 1], so the first index whose cumulative mass reaches it always has
    non-zero probability: a truncated token can never be drawn."""
    cdf = torch.cumsum(logprobs.double().exp(), dim=-1)
    targets = ((1.0 - uniforms).to(cdf.device) * cdf[:, -1]).unsqueeze(-1)
    picked = torch.searchsorted(cdf, targets).squeeze(-1)
    return picked.clamp(max=logprobs.shape[-1] - 1)


def cut_at_eos(tokens: torch.Tensor, lp_model: torch.Tensor, lp_sampler: torch.Tensor,
               eos_id: int | None) -> list[Continuation]:
    """Turn (batch, steps) tensors into per-row continuations ending at the first EOS."""
    out = []
    for toks, lpm, lps in zip(tokens.tolist(), lp_model.tolist(), lp_sampler.tolist()):
        stopped = eos_id is not None and eos_id in toks
        end = toks.index(eos_id) + 1 if stopped else len(toks)
        out.append(Continuation(toks[:end], lpm[:end], lps[:end], stopped))
    return out


class Step(NamedTuple):
    logits: torch.Tensor
    cache: object
    hidden: torch.Tensor | None


@functools.lru_cache(maxsize=None)
def _cache_argument(model_class: type) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); accept both generations."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


@functools.lru_cache(maxsize=None)
def _keeps_logits(model_class: type) -> bool:
    """Whether forward() takes `logits_to_keep` (transformers >= 4.50 causal LMs; remote code may not)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def last_columns(model, count: int) -> dict:
    """forward() arguments for logits at the last `count` positions only. The output layer is a
    third of a small model's work per token (8,192 x 256 of the builtin's 5.4M parameters):
    a prompt pass needs its logits at one position, not at every context token."""
    return {"logits_to_keep": count} if _keeps_logits(type(model)) else {}


def model_logits(model, ids, mask, pos, cache=None, hidden=False) -> Step:
    """One forward pass with the KV cache: next-token logits (rows, 1, V) at the last position
    only, and final-layer hidden states at every position when asked."""
    name = _cache_argument(type(model))
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                output_hidden_states=hidden, **{name: cache}, **last_columns(model, 1))
    # A model sharded by device_map returns its outputs where its last layers live.
    return Step(out.logits.to(ids.device), getattr(out, name),
                out.hidden_states[-1].to(ids.device) if hidden else None)


def choose_tokens(logits: torch.Tensor, sampler: Sampler,
                  uniforms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decoding step for (rows, V) next-token logits: (token, its log-prob under the model,
    its log-prob under the sampler). With `uniforms` (one per row) the token is drawn by inverse
    CDF; without, it is the sampler distribution's argmax (greedy)."""
    logits = logits.float()
    lp_model = torch.log_softmax(logits, dim=-1)
    lp_sampler = torch.log_softmax(sampler.process(logits), dim=-1)
    token = lp_sampler.argmax(dim=-1) if uniforms is None else inverse_cdf_sample(lp_sampler, uniforms)
    return token, lp_model.gather(-1, token[:, None])[:, 0], lp_sampler.gather(-1, token[:, None])[:, 0]


def step_through(logits: torch.Tensor, sampler: Sampler, uniforms: torch.Tensor | None, max_new_tokens: int,
                 eos_id: int | None, next_logits: Callable[[torch.Tensor], torch.Tensor],
                 check_every: int = 1) -> list[Continuation]:
    """The token-by-token part of every sampling loop: choose each step's tokens from `logits`
    (rows, V), stop at the budget or once every row has ended, else get the next step's logits
    from `next_logits(tokens)`. Whether every row has ended is asked every `check_every` steps
    (on a GPU the question waits for the device); rows that ended meanwhile are cut at their
    first end-of-text all the same.

    A sampler with per-row state (mirostat) has `start_rows(rows, device)`: the loop draws from
    that object's process() and tells it each step's tokens (observe)."""
    if hasattr(sampler, "start_rows"):
        sampler = sampler.start_rows(logits.shape[0], logits.device)
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for step in range(max_new_tokens):
        chosen = choose_tokens(logits, sampler, None if uniforms is None else uniforms[:, step])
        if hasattr(sampler, "observe"):
            sampler.observe(chosen[0])
        steps.append(chosen)
        if eos_id is not None:
            finished |= chosen[0] == eos_id
        if step == max_new_tokens - 1 or (eos_id is not None and step % check_every == check_every - 1
                                          and bool(finished.all())):
            break
        logits = next_logits(chosen[0])
    return cut_at_eos(*(torch.stack(s, dim=1).cpu() for s in zip(*steps)), eos_id)


@torch.inference_mode()
def sample_loop(model, contexts: Sequence[Sequence[int]], sampler: Sampler, max_new_tokens: int,
                eos_id: int | None, pad_id: int, seeds: Sequence[int], device: str) -> list[Continuation]:
    """Ancestral sampling (strategy "sample") or greedy search (strategy "greedy")."""
    ids, mask = left_pad(contexts, pad_id, device)
    uniforms = draw_uniforms(seeds, max_new_tokens, device) if sampler.strategy == "sample" else None
    pos = positions(mask)
    out = model_logits(model, ids, mask, pos)
    cache, pos = out.cache, pos[:, -1:]

    def next_logits(token: torch.Tensor) -> torch.Tensor:
        nonlocal cache, mask, pos
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        pos = pos + 1
        step = model_logits(model, token[:, None], mask, pos, cache)
        cache = step.cache
        return step.logits[:, -1, :]

    return step_through(out.logits[:, -1, :], sampler, uniforms, max_new_tokens, eos_id, next_logits)


class TeacherForced(NamedTuple):
    logits: torch.Tensor
    """(rows, columns, V) float32; column j predicts targets[:, j]. The columns are the last ones
    of the left-padded rows, as many as the longest continuation needs."""
    targets: torch.Tensor
    """(rows, columns) the token each column predicts."""
    starts: list[int]
    """Per row, the column that predicts the continuation's first token."""


@torch.inference_mode()
def teacher_forced(model, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                   pad_id: int, device: str) -> TeacherForced:
    """One forward pass over every context + continuation, left-padded: the logits that predict
    each continuation token given the context and the preceding continuation tokens."""
    rows = [list(c) + list(x) for c, x in zip(contexts, continuations)]
    ids, mask = left_pad(rows, pad_id, device)
    # Only the columns that predict continuation tokens need logits: the last longest + 1.
    width, keep = ids.shape[1], min(ids.shape[1], max((len(x) for x in continuations), default=0) + 1)
    extra = last_columns(model, keep)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), **extra).logits
    logits = logits.to(ids.device).float()[:, -keep:]
    # Token j of a continuation sits at column width - len(cont) + j; it is predicted by the
    # logits one column before, which is index keep - len(cont) + j - 1 after the shift.
    return TeacherForced(logits[:, :-1], ids[:, width - keep + 1:], [keep - len(cont) - 1 for cont in continuations])


@torch.inference_mode()
def teacher_forced_logprobs(model, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                            pad_id: int, device: str) -> list[list[float]]:
    """The model's log-probability of each continuation token given the context and the
    preceding continuation tokens (used for human text and for beam search outputs)."""
    forced = teacher_forced(model, contexts, continuations, pad_id, device)
    logprobs = torch.log_softmax(forced.logits, dim=-1).gather(-1, forced.targets[..., None])[..., 0]
    return [logprobs[i, start:start + len(cont)].tolist() if cont else []
            for i, (start, cont) in enumerate(zip(forced.starts, continuations))]


@torch.inference_mode()
def continuation_logits(model, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                        pad_id: int, device: str) -> list[torch.Tensor]:
    """Per row, the (len(continuation), vocab) float32 logits that predict each continuation
    token given the context and the preceding continuation tokens (e.g. for token ranks)."""
    forced = teacher_forced(model, contexts, continuations, pad_id, device)
    return [forced.logits[i, start:start + len(cont)] for i, (start, cont) in enumerate(zip(forced.starts, continuations))]


def decode(model, contexts, sampler: Sampler, max_new_tokens: int, eos_id: int | None, pad_id: int,
           seeds: Sequence[int], device: str) -> list[Continuation]:
    """Continue every context with the sampler: search methods bring their own loop (and get the
    per-prompt seeds too: a stochastic search draws from them, a deterministic one ignores them)."""
    if sampler.strategy in ("sample", "greedy"):
        # A model loaded with compile=True carries its static-cache loop (evalharness.generation.fast_decoding).
        loop = getattr(model, "evalharness_fast_path", None) or sample_loop
        return loop(model, contexts, sampler, max_new_tokens, eos_id, pad_id, seeds, device)
    return sampler.decode(model, contexts, max_new_tokens, eos_id, pad_id, device, seeds=seeds)
