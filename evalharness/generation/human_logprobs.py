"""The sampler's probability of human text: how much of the human continuation each sampler allows.

For a run whose sampler draws from a per-step distribution (strategy "sample" or "greedy"),
the human continuation of every prompt is teacher-forced through the model (context, then
the human tokens so far, as the oracle does with the whole prefix) and each human token gets
its log-probability under the run's own sampling distribution: log_softmax(sampler.process(
logits)) — tempered, truncated and interpolated exactly as generation draws from it. Greedy
search draws from a point mass on the argmax of those scores (ties: lowest id, as decoding
takes it), so under greedy a human token has log-probability 0 when it is greedy's choice and
-inf otherwise: `human_coverage` is then the share of human tokens greedy would have produced.

Records, one per prompt, in <run>/human_logprobs.jsonl:
    {"prompt_id": "00042", "logprobs": [-2.31, null, -0.07, ...]}
one entry per human token (end-of-text included when the document ended), natural log;
`null` stands for -inf (the token is outside the sampler's support; JSON has no infinity).
The file is appended batch by batch and resumable like generations.jsonl.

A sampler with per-row state (mirostat: its threshold mu follows the surprise of the tokens
drawn) has a per-step distribution too, given the prefix: the human tokens drive its state, one
prompt's tokens in order (`stateful_logprobs`), so each human token gets the probability the
sampler would have given it had it produced the human prefix itself.

Human-like text must be possible under a sampler before it can be typical of it: Holtzman et
al. 2019 ask the oracle's question ("how large must k and p be to allow the human token?"),
and HUSE (Hashimoto et al. 2019) needs exactly these probabilities for the human texts.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Sequence

import torch

from evalharness.generation.decoding import teacher_forced
from evalharness.records import Prompt
from evalharness.store import append_jsonl, read_jsonl

FILE = "human_logprobs.jsonl"
ELEMENTS_PER_CHUNK = 1 << 20
"""sampler.process runs on at most this many (position x vocabulary) scores at once. Its float64
intermediates are several times that in bytes, and they should stay in the CPU's caches: chunks
of 2**20 scores (128 rows of an 8,192-token vocabulary) took typical 0.36 s, top-p 0.19 s and
eta 0.12 s per 1,000 rows, against 0.56, 0.24 and 0.21 s in chunks of 2**22."""


def defines_distribution(sampler) -> bool:
    """Whether the sampler draws every token from a per-step distribution of its own."""
    return sampler.strategy in ("sample", "greedy")


def sampling_logprobs(sampler, logits: torch.Tensor) -> torch.Tensor:
    """(N, V) log-probabilities of the distribution the sampler draws the next token from."""
    logprobs = torch.log_softmax(sampler.process(logits), dim=-1)
    if sampler.strategy == "greedy":
        choice = logprobs.argmax(dim=-1, keepdim=True)
        logprobs = torch.full_like(logprobs, float("-inf")).scatter(-1, choice, 0.0)
    return logprobs


class HumanLogits:
    """The teacher-forced logits at the human tokens of each batch, kept in memory so that every
    run after the first reads them instead of running the model again (they depend on the
    model and the batch, not on the sampler). Batches are kept while they fit in `budget_bytes`;
    past that they are recomputed, with the same numbers."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget_bytes = budget_bytes
        self.kept: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self.used = 0

    def __call__(self, loaded, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
        """((human tokens, V) float32 logits, (human tokens,) targets), prompts in order."""
        key = tuple(p.prompt_id for p in prompts)
        if key not in self.kept:
            logits, targets = human_token_logits(loaded, prompts)
            size = logits.element_size() * logits.nelement()
            if self.used + size > self.budget_bytes:
                return logits, targets
            self.kept[key], self.used = (logits, targets), self.used + size
        return self.kept[key]


def human_token_logits(loaded, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
    forced = teacher_forced(loaded.model, [p.context_ids for p in prompts], [p.human_ids for p in prompts],
                            loaded.pad_id, loaded.device)
    rows = torch.cat([torch.full((len(p.human_ids),), i) for i, p in enumerate(prompts)])
    cols = torch.cat([torch.arange(s, s + len(p.human_ids)) for s, p in zip(forced.starts, prompts)])
    return forced.logits[rows, cols], forced.targets[rows, cols]


def model_logprobs_of_human(loaded, prompts: Sequence[Prompt], human_logits: HumanLogits | None = None) -> list[list[float]]:
    """Per prompt, the model's own log-probability of each human continuation token."""
    logits, targets = (human_logits or human_token_logits)(loaded, prompts)
    with torch.inference_mode():
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0].tolist()
    return per_prompt(picked, prompts)


def sampler_logprobs_of_human(loaded, sampler, prompts: Sequence[Prompt],
                              human_logits: HumanLogits | None = None) -> list[dict]:
    """One record per prompt: the log-probability of each human continuation token under the
    sampler's own per-step distribution (None where it is -inf)."""
    logits, targets = (human_logits or human_token_logits)(loaded, prompts)
    chunk = max(1, ELEMENTS_PER_CHUNK // logits.shape[-1])
    with torch.inference_mode():
        if hasattr(sampler, "start_rows"):
            picked = stateful_logprobs(sampler, logits, targets, [len(p.human_ids) for p in prompts]).tolist()
        else:
            picked = torch.cat([sampling_logprobs(sampler, logits[i:i + chunk]).gather(-1, targets[i:i + chunk, None])[:, 0]
                                for i in range(0, len(targets), chunk)]).tolist()
    return [{"prompt_id": p.prompt_id, "logprobs": [v if math.isfinite(v) else None for v in values]}
            for p, values in zip(prompts, per_prompt(picked, prompts))]


def stateful_logprobs(sampler, logits: torch.Tensor, targets: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """(N,) log-probability of each target under a stateful sampler whose rows are the prompts:
    `logits` and `targets` hold prompt after prompt (lengths[i] tokens each). Step t processes
    every prompt's t-th token at once and tells the state the human token; a prompt already
    finished repeats its last row (its state is no longer read)."""
    out = torch.empty(len(targets), dtype=logits.dtype, device=logits.device)
    if not len(targets):
        return out
    starts = torch.tensor([0, *itertools.accumulate(lengths)][:-1], device=logits.device)
    sizes = torch.tensor(lengths, device=logits.device)
    state = sampler.start_rows(len(lengths), logits.device)
    for t in range(max(lengths)):
        active = sizes > t
        rows = starts + torch.minimum(torch.full_like(sizes, t), (sizes - 1).clamp(min=0))
        rows = torch.where(sizes > 0, rows, 0)
        logprobs = torch.log_softmax(state.process(logits[rows]), dim=-1)  # as sampling_logprobs
        state.observe(targets[rows])
        picked = logprobs.gather(-1, targets[rows, None])[:, 0]
        out[rows[active]] = picked[active]
    return out


def per_prompt(values: list[float], prompts: Sequence[Prompt]) -> list[list[float]]:
    """One value per human token of every prompt, in order -> one list per prompt."""
    out, start = [], 0
    for p in prompts:
        out.append(values[start:start + len(p.human_ids)])
        start += len(p.human_ids)
    return out


def path(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


def read(run_dir: Path, repair: bool = False) -> dict[str, list[float]]:
    """prompt id -> log-probabilities (float, -inf where the file says null); first record wins."""
    out: dict[str, list[float]] = {}
    for record in read_jsonl(path(run_dir), repair=repair):
        out.setdefault(record["prompt_id"], [float("-inf") if v is None else float(v) for v in record["logprobs"]])
    return out


def append(run_dir: Path, records: list[dict]) -> None:
    append_jsonl(path(run_dir), records)
