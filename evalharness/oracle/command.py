"""`oracle`: how large must k (top-k) and p (top-p) be to allow the human's next token?

Holtzman et al. 2019 (The Curious Case of Neural Text Degeneration) ask, for every token of
human text, where the true next token sits in the model's distribution. This module answers
it for an experiment's model and data source, batched at forward-pass speed.

Which tokens are scored
  Documents come from the experiment's data source in a seeded order (random.Random(seed)
  shuffles the document indices, as `data.build_prompts` does). Each document is tokenized
  whole, without special tokens, into x_0 ... x_{n-1}. Tokens are scored in that order until
  `num_tokens` have been (the last document may be scored only in part; None = all).
  The end of a document is not a token: no end-of-text token is scored, no BOS is prepended.
  * window mode (L = context_tokens): x_i is scored for every i >= L, and the model sees
    exactly x_{i-L} ... x_{i-1}, at positions 0 ... L-1, in a forward pass of its own (no
    earlier text, no cache). x_0 ... x_{L-1} are context only; a document of at most L tokens
    contributes nothing. L must not exceed the model's maximum length M (L context tokens
    take L positions; the scored token is predicted from the last of them).
  * prefix mode: x_i is scored for 1 <= i <= M, and the model sees the whole preceding
    document x_0 ... x_{i-1}. x_0 is never scored (nothing precedes it). Tokens x_i with
    i > M are not scored, because their whole prefix does not fit in the model; they are
    counted in settings.tokens_beyond_max_length. context_tokens is not used in this mode.
  For the token x_i scored at position i, window and prefix mode see the same context
  exactly when i = L.

What is measured (V = the model's output vocabulary; z = its logits, cast to float32;
q = softmax(z) in float64, as the samplers' `probabilities` does)
  rank k     = 1 + #{v : z_v > z_true}. Tokens tied with the true token share the best rank.
               It is the smallest K for which top-k (which keeps every token whose logit is
               >= the K-th largest logit, ties with the K-th kept) allows the true token.
  p          = sum of q_v over {v : z_v >= z_true}: the mass of every token ranked at or
               above the true one, its whole tied block included. A rank-1 token without ties
               has p = its own probability (exactly: the other terms are zeros).
  mass_above = sum of q_v over {v : z_v > z_true}: the mass strictly above it.
  prob       = q_true.
  Ties and order are decided on the logits, compared exactly, never on rounded
  probabilities; distinct float32 logits give distinct float64 probabilities, so ordering by
  logit is ordering by probability.

Coverage curves (consistent with the harness's samplers, and tested against them)
  top-k with k = K allows the true token iff k <= K.
  top-p with p = P keeps the smallest prefix of the descending order whose mass reaches P,
  ties at the edge kept; so it allows the true token iff mass_above < P. p (the mass up to
  and including the token) is one such P: the token is allowed by every P in (mass_above, 1],
  and p is "the cumulative probability up to and including it" of the source experiment.
  Coverage at P is the fraction with mass_above < P, which is >= the fraction with p <= P.

Outputs (in <results>/<name>/oracle/ unless --output): oracle.json (statistics, histograms,
coverage, settings), oracle_tokens.jsonl (one record per scored token), oracle_*.png.
Quantiles use numpy's default (linear interpolation).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from evalharness.errors import UserError

QUANTILES = (10, 25, 75, 90, 95, 99)
P_GRID = tuple(round(i / 100, 2) for i in range(1, 101))
P_HIST_BINS = 20
PREFIX_TOKENS_PER_PASS = 2048
"""Prefix mode packs documents into a pass until rows x padded length would exceed this
(a single document always fits: it is at most the model's maximum length)."""
SCORE_ROWS = 512
"""rank_and_mass works on at most this many rows at once (bounds float64 memory)."""
OUTPUT_FILES = ("oracle.json", "oracle_tokens.jsonl", "oracle_k_hist.png", "oracle_p_hist.png",
                "oracle_topk_coverage.png", "oracle_topp_coverage.png")


@dataclass(frozen=True)
class OracleSettings:
    """The oracle section after command-line overrides."""

    context_tokens: int
    mode: str
    num_tokens: int | None
    batch_size: int
    device: str


# --- the measurement ---------------------------------------------------------------------------

class TokenScores(NamedTuple):
    rank: "torch.Tensor"        # int64: 1 + number of tokens with a strictly greater logit
    p: "torch.Tensor"           # float64: mass of tokens with logit >= the true token's
    mass_above: "torch.Tensor"  # float64: mass of tokens with logit > the true token's
    prob: "torch.Tensor"        # float64: the true token's probability


def rank_and_mass(logits, targets) -> TokenScores:
    """Rank, cumulative probability, mass above and probability of targets[i] under logits[i].

    logits: (N, V) in any float dtype (compared as float32); targets: (N,) token ids."""
    import torch

    parts = []
    for start in range(0, logits.shape[0], SCORE_ROWS):
        z = logits[start:start + SCORE_ROWS].float()
        if z.device.type == "mps":  # no float64 there
            z = z.cpu()
        if bool(torch.isnan(z).any()):
            raise UserError("model.dtype: the model produced NaN logits; try float32")
        t = targets[start:start + SCORE_ROWS].to(z.device).long()
        true = z.gather(-1, t[:, None])
        above, at_or_above = z > true, z >= true
        probs = torch.softmax(z.double(), dim=-1)
        parts.append(TokenScores(
            rank=1 + above.sum(dim=-1),
            p=torch.where(at_or_above, probs, 0.0).sum(dim=-1),
            mass_above=torch.where(above, probs, 0.0).sum(dim=-1),
            prob=probs.gather(-1, t[:, None])[:, 0]))
    return TokenScores(*(torch.cat([getattr(s, f) for s in parts]).cpu() for f in TokenScores._fields))


def topk_allows(rank, k: int):
    """Whether top-k with k = K keeps the true token (see the module docstring)."""
    return rank <= k


def topp_allows(mass_above, p: float):
    """Whether top-p with p = P keeps the true token: the mass strictly above it is < P."""
    return mass_above < p


def support_rule(sampler: str, params: dict) -> tuple[str, float] | None:
    """Which oracle coverage answers "how much human text does this sampler allow?":
    ("all", 1) for pure and temperature sampling and any interpolated sampler (every token is
    allowed), ("top_k", K) for top_k at any temperature (temperature does not reorder tokens),
    ("top_p", P) for top_p at temperature 1; None where the oracle's ranks cannot say."""
    if params.get("interpolation", 0.0) > 0 or sampler in ("pure", "temperature"):
        return ("all", 1.0)
    if sampler == "top_k":
        return ("top_k", params["k"])
    if sampler == "top_p" and params.get("temperature", 1.0) == 1.0:
        return ("top_p", params["p"])
    return None


def sampler_coverage(summary: dict, columns: dict | None, sampler: str, params: dict) -> float | None:
    """The share of the oracle's tokens the sampler allows: exact from the per-token columns
    (oracle_tokens.jsonl) when present, else from oracle.json's coverage curves when the
    sampler's k or p is on their grid."""
    import numpy as np

    rule = support_rule(sampler, params)
    if rule is None or rule[0] == "all":
        return None if rule is None else 1.0
    kind, value = rule
    if columns is not None:
        allowed = (topk_allows(np.asarray(columns["rank"]), value) if kind == "top_k"
                   else topp_allows(np.asarray(columns["mass_above"]), value))
        return float(np.mean(allowed))
    curve = (summary.get("coverage") or {}).get(kind) or {}
    grid = curve.get("K" if kind == "top_k" else "P") or []
    return float(curve["fraction"][grid.index(value)]) if value in grid else None


def read_token_columns(folder: Path) -> dict | None:
    """rank and mass_above of every token in an oracle folder's oracle_tokens.jsonl (None if absent)."""
    path = Path(folder) / "oracle_tokens.jsonl"
    if not path.is_file():
        return None
    rank, mass_above = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rank.append(record["rank"])
            mass_above.append(record["mass_above"])
    return {"rank": rank, "mass_above": mass_above}


# --- which tokens: documents -> plans ----------------------------------------------------------

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


# --- forward passes ----------------------------------------------------------------------------

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


def plan_batches(plan: Plan, settings: OracleSettings, pad_id: int) -> list[Batch]:
    return list(window_batches(plan, settings.context_tokens, settings.batch_size) if settings.mode == "window"
                else prefix_batches(plan, settings.batch_size, pad_id))


def score_batches(model, plan: Plan, settings: OracleSettings, pad_id: int) -> Iterator[tuple[Batch, TokenScores]]:
    for batch in plan_batches(plan, settings, pad_id):
        yield batch, score_batch(model, batch, settings)


def score_batch(model, batch: Batch, settings: OracleSettings) -> TokenScores:
    import torch

    with torch.inference_mode():
        return rank_and_mass(batch_logits(model, batch, settings.device), batch.targets)


# --- statistics --------------------------------------------------------------------------------

def describe(values, ranks: bool = False) -> dict:
    """min, max, mean, median, std and the QUANTILES (numpy linear interpolation); with ranks,
    whole numbers are written as ints."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    num = _num if ranks else float
    return {"min": num(values.min()), "max": num(values.max()), "mean": float(values.mean()),
            "median": num(np.median(values)), "std": float(values.std()),
            "quantiles": {str(q): num(np.percentile(values, q)) for q in QUANTILES}}


def _num(value) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value


def k_grid(vocab_size: int) -> list[int]:
    """About 60 log-spaced K from 1 to the vocabulary size, plus the usual round values."""
    import numpy as np

    grid = {int(round(x)) for x in np.geomspace(1, vocab_size, 61)}
    grid |= {k for k in (2, 3, 5, 10, 20, 40, 50, 100, 200, 500, 640, 1000) if k <= vocab_size}
    return sorted(grid | {vocab_size})


def k_histogram(rank, vocab_size: int) -> dict:
    """Bins [1, 2), [2, 4), [4, 8), ..., the last one ending at vocab_size + 1: the first bin is rank 1."""
    import numpy as np

    edges = [1]
    while edges[-1] * 2 <= vocab_size:
        edges.append(edges[-1] * 2)
    edges.append(vocab_size + 1)
    counts, _ = np.histogram(rank, bins=edges)
    return {"edges": edges, "counts": counts.tolist(), "fractions": (counts / len(rank)).tolist(),
            "bins": "edges[i] <= k < edges[i+1]"}


def p_histogram(p) -> dict:
    import numpy as np

    counts, edges = np.histogram(np.clip(p, 0.0, 1.0), bins=P_HIST_BINS, range=(0.0, 1.0))
    return {"edges": [round(e, 4) for e in edges.tolist()], "counts": counts.tolist(),
            "fractions": (counts / len(p)).tolist(), "bins": "edges[i] <= p < edges[i+1]; the last bin includes 1"}


def coverage(rank, mass_above, vocab_size: int) -> dict:
    """The fraction of human tokens each top-k / top-p setting allows (rules in the docstring)."""
    import numpy as np

    ks, ps = k_grid(vocab_size), list(P_GRID)
    return {
        "top_k": {"K": ks, "fraction": [float(np.mean(topk_allows(rank, k))) for k in ks],
                  "rule": "allowed iff k <= K"},
        "top_p": {"P": ps, "fraction": [float(np.mean(topp_allows(mass_above, p))) for p in ps],
                  "rule": "allowed iff mass_above < P (the mass strictly above the token)"},
    }


def summarize(columns: dict, vocab_size: int) -> dict:
    """Everything oracle.json holds except the settings."""
    rank, p = columns["rank"], columns["p"]
    return {"count": int(len(rank)), "k": describe(rank, ranks=True), "p": describe(p),
            "histograms": {"k": k_histogram(rank, vocab_size), "p": p_histogram(p)},
            "coverage": coverage(rank, columns["mass_above"], vocab_size)}


# --- running it --------------------------------------------------------------------------------

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
    import numpy as np
    from tqdm.auto import tqdm

    from evalharness.parallel import for_each_share

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
    import tempfile

    if not world.is_main:
        return score_plan(plan, loaded, settings, None, world)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".oracle_tokens.jsonl.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            result = score_plan(plan, loaded, settings, handle, world)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; results are meant to be shared
        os.replace(tmp, out / "oracle_tokens.jsonl")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


def vocab_size(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def settings_record(cfg, settings: OracleSettings, plan: Plan, loaded, seconds: float, n_docs: int) -> dict:
    from evalharness import __version__
    from evalharness.pipeline import git_commit, machine, versions

    scored = plan.num_tokens
    return {
        "experiment": cfg.name, "config_file": cfg.path, "model": cfg.model.name, "dtype": cfg.model.dtype,
        "source": cfg.data.source, "split": cfg.data.split, "seed": cfg.seed, "mode": settings.mode,
        "context_tokens": settings.context_tokens if settings.mode == "window" else None,
        "num_tokens_requested": settings.num_tokens, "num_tokens": scored,
        "documents_scored": len(plan.docs), "documents_read": plan.documents_seen, "documents_in_source": n_docs,
        "tokens_beyond_max_length": plan.tokens_beyond_max_length,
        "vocab_size": vocab_size(loaded.model), "max_positions": loaded.max_positions,
        "device": settings.device, "batch_size": settings.batch_size,
        "seconds": round(seconds, 3), "tokens_per_second": round(scored / seconds, 1) if seconds > 0 else None,
        "evalharness_version": __version__, "git_commit": git_commit(), "versions": versions(),
        "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def check_output(out: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"--output: {out} already holds oracle results ({existing[0]}); "
                        "rerun with --overwrite or choose another --output")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output: {out} is a file, not a folder")


def check_context(settings: OracleSettings, max_positions: int | None) -> None:
    if settings.mode == "window" and max_positions is not None and settings.context_tokens > max_positions:
        raise UserError(f"oracle.context_tokens: {settings.context_tokens} exceeds the model's maximum length "
                        f"of {max_positions} tokens; use at most {max_positions} (or --context-tokens)")


def check_plan(plan: Plan, cfg, settings: OracleSettings) -> None:
    source = cfg.data.source
    if not plan.docs and settings.mode == "window":
        raise UserError(f"oracle.context_tokens: no document of {source} has more than "
                        f"{settings.context_tokens} tokens; lower it (or --context-tokens)")
    if not plan.docs:
        raise UserError(f"data.source: no document of {source} has 2 or more tokens")


def run_oracle(cfg, settings: OracleSettings, out: Path, overwrite: bool = False, world=None) -> dict | None:
    """Everything that can fail on user input is checked before the results folder is touched.
    Under torchrun every rank scores a share of the batches; rank 0 reads the data, writes the
    results and returns the summary (the other ranks return None)."""
    from evalharness.models import load_model
    from evalharness.oracle_plots import write_plots
    from evalharness.parallel import World, rank_device
    from evalharness.store import write_json

    world = world or World()
    docs = world.on_main(lambda: checked_documents(cfg, out, overwrite))
    loaded = world.everywhere(lambda: load_model(
        cfg.model.name, rank_device(settings.device, world), cfg.model.dtype, cfg.model.trust_remote_code,
        cfg.model.use_safetensors, device_map=cfg.model.device_map, max_memory=cfg.model.max_memory,
        offload_folder=cfg.model.offload_folder, world=world))
    settings = replace(settings, device=loaded.device)
    check_context(settings, loaded.max_positions)
    plan = world.on_main(lambda: checked_plan(docs, loaded, cfg, settings, out))
    columns, seconds = write_token_records(out, plan, loaded, settings, world)
    if not world.is_main:
        return None
    summary = summarize(columns, vocab_size(loaded.model))
    summary = {"settings": settings_record(cfg, settings, plan, loaded, seconds, len(docs)), **summary}
    write_json(out / "oracle.json", summary)
    write_plots(out, summary)
    return summary


def checked_documents(cfg, out: Path, overwrite: bool) -> list:
    from evalharness.data import read_documents

    check_output(out, overwrite)
    docs = read_documents(cfg.data)
    if not docs:
        raise UserError(f"data.source: {cfg.data.source} holds no documents")
    return docs


def checked_plan(docs, loaded, cfg, settings: OracleSettings, out: Path) -> Plan:
    from evalharness.store import ensure_writable

    plan = plan_documents(docs, loaded.tokenizer, cfg.seed, settings, loaded.max_positions)
    check_plan(plan, cfg, settings)
    ensure_writable(out)
    return plan


# --- command line ------------------------------------------------------------------------------

def resolve_settings(cfg, args: argparse.Namespace) -> OracleSettings:
    """The experiment's oracle section with the command-line flags on top."""
    for flag, value in (("--num-tokens", args.num_tokens), ("--context-tokens", args.context_tokens),
                        ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be an integer >= 1 (got {value})")
    device = args.device or cfg.model.device
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UserError(f"--device: must be auto, cpu, cuda, cuda:N or mps (got {device!r})")
    base = cfg.oracle
    pick = lambda flag, value: value if flag is None else flag  # noqa: E731
    return OracleSettings(context_tokens=pick(args.context_tokens, base.context_tokens),
                          mode=pick(args.mode, base.mode), num_tokens=pick(args.num_tokens, base.num_tokens),
                          batch_size=pick(args.batch_size, base.batch_size), device=device)


def format_summary(summary: dict, out: Path) -> str:
    s, k, p = summary["settings"], summary["k"], summary["p"]
    cov = summary["coverage"]
    at = lambda curve, key, x: curve["fraction"][curve[key].index(x)] if x in curve[key] else None  # noqa: E731
    where = f"window of {s['context_tokens']} tokens" if s["mode"] == "window" else "whole prefix"
    lines = [f"oracle: {summary['count']} tokens of {s['source']} ({s['documents_scored']} documents), "
             f"{where}, {s['tokens_per_second']} tokens/s",
             f"  k: median {k['median']}, mean {k['mean']:.2f}, max {k['max']}",
             f"  p: median {p['median']:.3f}, mean {p['mean']:.3f}"]
    k40, p95 = at(cov["top_k"], "K", 40), at(cov["top_p"], "P", 0.95)
    if k40 is not None:
        lines.append(f"  top-k 40 allows {k40:.1%} of human tokens; top-p 0.95 allows {p95:.1%}")
    if s["num_tokens_requested"] and s["num_tokens"] < s["num_tokens_requested"]:
        lines.append(f"  note: only {s['num_tokens']} of the {s['num_tokens_requested']} tokens asked for exist")
    lines.append(f"results: {out}")
    return "\n".join(lines)


def cmd_oracle(args: argparse.Namespace) -> int:
    from evalharness import config, parallel

    cfg = config.load(args.experiment)
    settings = resolve_settings(cfg, args)
    out = Path(args.output) if args.output else Path("results") / cfg.name / "oracle"
    world = parallel.start(settings.device)
    try:
        summary = run_oracle(cfg, settings, out, overwrite=args.overwrite, world=world)
    finally:
        world.shutdown()
    if world.is_main:
        print(format_summary(summary, out))
    return 0


def register_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "oracle", help="rank and cumulative probability of every human token (smallest top-k / top-p allowing it)",
        description="For every token of held-out human text: its rank under the model and the probability "
                    "mass at or above it. Writes oracle.json, oracle_tokens.jsonl and plots.")
    parser.add_argument("experiment", help="path to the experiment YAML (model, data, oracle section)")
    parser.add_argument("--output", help="folder for the results (default results/<name>/oracle)")
    parser.add_argument("--num-tokens", type=int, help="override oracle.num_tokens (stop after N scored tokens)")
    parser.add_argument("--context-tokens", type=int, help="override oracle.context_tokens (window mode)")
    parser.add_argument("--mode", choices=("window", "prefix"), help="override oracle.mode")
    parser.add_argument("--device", help="override model.device (cpu, cuda, cuda:N, auto)")
    parser.add_argument("--batch-size", type=int, help="override oracle.batch_size")
    parser.add_argument("--overwrite", action="store_true", help="replace oracle results already in the folder")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(func=cmd_oracle)
