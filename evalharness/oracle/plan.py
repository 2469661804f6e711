"""Which tokens the oracle scores, and in what batches: documents -> a Plan -> Batches."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

PREFIX_TOKENS_PER_PASS = 2048
"""Prefix mode packs documents into a pass until rows x padded length would exceed this
(a single document always fits: it is at most the model's maximum length)."""

@dataclass(frozen=True)
class OracleSettings:
    """The oracle section after command-line overrides."""

    context_tokens: int
    mode: str
    num_tokens: int | None
    batch_size: int
    device: str


@dataclass(frozen=True)
class DocPlan:
    """One document's token ids and the positions scored in it (start <= i < stop)."""

    doc_id: str
    ids: tuple[int, ...]
    start: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.start


@dataclass
class Plan:
    docs: list[DocPlan]
    documents_seen: int = 0
    tokens_beyond_max_length: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(d.count for d in self.docs)


def scored_range(n: int, settings: OracleSettings, max_positions: int | None) -> tuple[int, int, int]:
    """(start, stop, tokens not scored because the model is too short) for an n-token document."""
    if settings.mode == "window":
        return settings.context_tokens, max(n, settings.context_tokens), 0
    stop = n if max_positions is None else min(n, max_positions + 1)
    return 1, max(stop, 1), max(0, n - max(stop, 1))


def plan_documents(docs: Sequence[tuple[str, str]], tokenizer, seed: int, settings: OracleSettings,
                   max_positions: int | None, chunk: int = 64) -> Plan:
    """Tokenize documents in seeded order until num_tokens can be scored."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    plan, taken, wanted = Plan([]), 0, settings.num_tokens or math.inf
    for first in range(0, len(order), chunk):
        picked = [docs[i] for i in order[first:first + chunk]]
        encoded = tokenizer([text for _, text in picked], add_special_tokens=False, verbose=False)["input_ids"]
        for (doc_id, _), ids in zip(picked, encoded):
            plan.documents_seen += 1
            start, stop, beyond = scored_range(len(ids), settings, max_positions)
            if stop - start > wanted - taken:  # the quota ends inside this document
                stop, beyond = start + int(wanted - taken), 0
            if stop > start:
                plan.docs.append(DocPlan(str(doc_id), tuple(ids), start, stop))
                plan.tokens_beyond_max_length += beyond
                taken += stop - start
            if taken >= wanted:
                return plan
    return plan

# --- batches -----------------------------------------------------------------------------------

class Batch(NamedTuple):
    inputs: "torch.Tensor"     # window: (B, L) windows; prefix: (R, T) right-padded documents
    attention: "torch.Tensor | None"  # prefix: (R, T) 1 on real tokens, 0 on padding
    select: "torch.Tensor | None"  # prefix: (R, T) True where the column predicts a scored token
    targets: "torch.Tensor"    # (N,) the true next tokens, in record order
    doc_index: "torch.Tensor"  # (N,) index into Plan.docs
    position: "torch.Tensor"   # (N,) position of the scored token in its document


def window_batches(plan: Plan, context: int, batch_size: int) -> Iterator[Batch]:
    """Batches of exactly batch_size windows (the last may be smaller), across documents."""
    import torch

    pending: list[Batch] = []
    size = 0
    for index, doc in enumerate(plan.docs):
        ids = torch.tensor(doc.ids, dtype=torch.long)
        windows = ids.unfold(0, context, 1)[doc.start - context:doc.stop - context]
        pending.append(Batch(windows, None, None, ids[doc.start:doc.stop], torch.full((doc.count,), index),
                             torch.arange(doc.start, doc.stop)))
        size += doc.count
        if size >= batch_size:
            merged = _cat(pending)
            whole = size - size % batch_size
            for first in range(0, whole, batch_size):
                yield _slice(merged, first, first + batch_size)
            pending, size = ([_slice(merged, whole, size)] if size > whole else []), size - whole
    if size:
        yield _cat(pending)


def _cat(parts: list[Batch]) -> Batch:
    import torch
    return Batch(*(None if parts[0][f] is None else torch.cat([p[f] for p in parts]) for f in range(len(Batch._fields))))


def _slice(batch: Batch, a: int, b: int) -> Batch:
    return Batch(*(None if t is None else t[a:b] for t in batch))


def prefix_batches(plan: Plan, batch_size: int, pad_id: int) -> Iterator[Batch]:
    """Consecutive documents, right-padded (causal attention: pads after a token never change it)."""
    group: list[int] = []
    for index, doc in enumerate(plan.docs):
        longest = max([plan.docs[i].stop - 1 for i in group] + [doc.stop - 1])
        if group and (len(group) == batch_size or longest * (len(group) + 1) > PREFIX_TOKENS_PER_PASS):
            yield _prefix_batch(plan, group, pad_id)
            group = []
        group.append(index)
    if group:
        yield _prefix_batch(plan, group, pad_id)


def _prefix_batch(plan: Plan, group: list[int], pad_id: int) -> Batch:
    """Row r holds x_0 ... x_{stop-2}; column j predicts x_{j+1}, scored when j + 1 >= start."""
    import torch

    width = max(plan.docs[i].stop - 1 for i in group)
    inputs = torch.full((len(group), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(group), width), dtype=torch.long)
    select = torch.zeros((len(group), width), dtype=torch.bool)
    targets, doc_index, position = [], [], []
    for row, index in enumerate(group):
        doc = plan.docs[index]
        inputs[row, :doc.stop - 1] = torch.tensor(doc.ids[:doc.stop - 1])
        attention[row, :doc.stop - 1] = 1
        select[row, doc.start - 1:doc.stop - 1] = True
        targets += doc.ids[doc.start:doc.stop]
        doc_index += [index] * doc.count
        position += range(doc.start, doc.stop)
    return Batch(inputs, attention, select, torch.tensor(targets), torch.tensor(doc_index), torch.tensor(position))

def plan_batches(plan: Plan, settings: OracleSettings, pad_id: int) -> list[Batch]:
    return list(window_batches(plan, settings.context_tokens, settings.batch_size) if settings.mode == "window"
                else prefix_batches(plan, settings.batch_size, pad_id))
