"""The oracle's forward passes: every planned token scored, its record written as it comes."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from evalharness.experiment.parallel import for_each_share
from evalharness.generation.ranks import TokenScores, rank_and_mass
from evalharness.oracle.plan import Batch, OracleSettings, Plan, plan_batches
from evalharness.store import atomic_writer

def _keeps_last_logits_only(model) -> bool:
    """transformers' causal LMs accept logits_to_keep: skip the LM head where nothing is scored."""
    return "logits_to_keep" in inspect.signature(type(model).forward).parameters


def batch_logits(model, batch: Batch, device: str):
    """(N, V) next-token logits for the batch's scored tokens, in record order."""
    inputs = batch.inputs.to(device)
    if batch.select is None:
        extra = {"logits_to_keep": 1} if _keeps_last_logits_only(model) else {}
        return model(input_ids=inputs, use_cache=False, **extra).logits[:, -1, :].to(device)
    logits = model(input_ids=inputs, attention_mask=batch.attention.to(device), use_cache=False).logits
    return logits.to(device)[batch.select.to(device)]  # a device_map model answers on its last device

def score_batches(model, plan: Plan, settings: OracleSettings, pad_id: int) -> Iterator[tuple[Batch, TokenScores]]:
    for batch in plan_batches(plan, settings, pad_id):
        yield batch, score_batch(model, batch, settings)


def score_batch(model, batch: Batch, settings: OracleSettings) -> TokenScores:
    with torch.inference_mode():
        return rank_and_mass(batch_logits(model, batch, settings.device), batch.targets)

class TokenTexts:
    """Each token id decoded alone, cached."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = self.tokenizer.decode([token_id])
        return self.cache[token_id]


def records_text(plan: Plan, batch: Batch, scores: TokenScores, texts: TokenTexts) -> str:
    columns = zip(batch.doc_index.tolist(), batch.position.tolist(), batch.targets.tolist(),
                  scores.rank.tolist(), scores.p.tolist(), scores.prob.tolist(), scores.mass_above.tolist())
    lines = []
    for doc, position, token, rank, p, prob, above in columns:
        record = {"doc_id": plan.docs[doc].doc_id, "position": position, "token_id": token,
                  "token": texts(token), "rank": rank, "p": p, "prob": prob, "mass_above": above}
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(lines)


def score_plan(plan: Plan, loaded, settings: OracleSettings, handle, world) -> tuple[dict, float]:
    """Score every planned token, writing records to handle; (numpy columns, seconds).
    Under torchrun the batches are shared out among the ranks and rank 0 writes them in order
    (the other ranks have no handle and return nothing)."""
    texts = TokenTexts(loaded.tokenizer)
    parts: dict[str, list] = {f: [] for f in TokenScores._fields}
    started = time.perf_counter()
    bar = tqdm(total=plan.num_tokens, desc="oracle", unit="tok", disable=None if world.is_main else True)

    def consume(batch: Batch, scores: TokenScores) -> None:
        handle.write(records_text(plan, batch, scores, texts))
        for f in TokenScores._fields:
            parts[f].append(getattr(scores, f).numpy())
        bar.update(len(batch.targets))

    for_each_share(world, plan_batches(plan, settings, loaded.pad_id),
                   lambda batch: score_batch(loaded.model, batch, settings), consume)
    bar.close()
    seconds = time.perf_counter() - started
    return {f: np.concatenate(v) for f, v in parts.items()} if world.is_main else {}, seconds


def write_token_records(out: Path, plan: Plan, loaded, settings: OracleSettings, world) -> tuple[dict, float]:
    """oracle_tokens.jsonl appears whole or not at all (written aside, then renamed)."""
    if not world.is_main:
        return score_plan(plan, loaded, settings, None, world)
    with atomic_writer(out / "oracle_tokens.jsonl") as handle:
        return score_plan(plan, loaded, settings, handle, world)


def vocab_size(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)
