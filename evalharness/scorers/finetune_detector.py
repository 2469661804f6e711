"""The MiniLM encoder fine-tuned as a human-vs-generated classifier (detectability `finetune`).

all-MiniLM-L6-v2 (the offline copy featurize.py uses) with a fresh two-way classification head
(transformers' BertForSequenceClassification: dropout + linear on the pooled [CLS] output),
trained on the outer training texts with cross-entropy, AdamW, linear warm-up over the first
10% of steps then linear decay, for a fixed number of epochs. No hyperparameter search: the
inner splits are not used. Seeded (head initialisation, dropout, batch order); on a CPU the
same seed gives the same scores, on a GPU kernels may differ in the last bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from evalharness.scorers.featurize import MINILM_MAX_TOKENS, minilm_path


class FineTunedMiniLM:
    """fit(texts, labels) / predict_proba(texts), like a scikit-learn classifier."""

    def __init__(self, epochs: int, learning_rate: float, batch_size: int, seed: int, device: str,
                 max_tokens: int = MINILM_MAX_TOKENS, path: Path | None = None) -> None:
        self.epochs, self.learning_rate, self.batch_size = epochs, learning_rate, batch_size
        self.seed, self.device, self.max_tokens = seed, device, max_tokens
        self.path = path
        """The encoder folder: all-MiniLM-L6-v2 by default (tests pass a tiny BERT)."""
        self.model = self.tokenizer = None

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> "FineTunedMiniLM":
        import torch
        from transformers import get_linear_schedule_with_warmup

        torch.manual_seed(self.seed)
        self.model, self.tokenizer = _load_classifier(self.path or minilm_path(), self.device)
        optimizer = _adamw(self.model.parameters(), self.learning_rate)
        steps = self.epochs * -(-len(texts) // self.batch_size)
        schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
        order = torch.Generator().manual_seed(self.seed)
        targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.model.train()
        for _ in range(self.epochs):
            permutation = torch.randperm(len(texts), generator=order).tolist()
            for start in range(0, len(texts), self.batch_size):
                batch = permutation[start:start + self.batch_size]
                loss = self.model(**self._encode([texts[i] for i in batch]),
                                  labels=targets[batch].to(self.device)).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
        self.model.eval()
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                logits = self.model(**self._encode(list(texts[start:start + self.batch_size]))).logits
                parts.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 2))

    def _encode(self, texts: list[str]) -> dict:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        return {k: v.to(self.device) for k, v in encoded.items()}


def _adamw(parameters, learning_rate: float):
    """AdamW, fused where this torch has the fused kernel for the device (several times faster
    on a CPU than the default; the same update up to float rounding)."""
    import torch

    parameters = list(parameters)
    try:
        return torch.optim.AdamW(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(parameters, lr=learning_rate)


def _load_classifier(path: Path, device: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier weights": that is the point
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, local_files_only=True)
    finally:
        hf_logging.set_verbosity(level)
    return model.to(device), tokenizer


def finetune_classifier(seed: int, epochs: int, learning_rate: float, batch_size: int, device: str):
    """A detection.ClassifierFactory: ignores the inner splits (fixed hyperparameters)."""
    def make(inner: list) -> FineTunedMiniLM:
        return FineTunedMiniLM(epochs, learning_rate, batch_size, seed, device)

    return make
