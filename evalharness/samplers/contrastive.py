"""Contrastive search (Su et al. 2022), implemented here: transformers 5 no longer ships it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.generation.cache_rows import defer_row_selection
from evalharness.generation.decoding import Continuation, cut_at_eos, left_pad, model_logits, positions
from evalharness.samplers.base import SAMPLERS, Sampler, check_float, check_int


@SAMPLERS.register("contrastive")
@dataclass(frozen=True)
class Contrastive(Sampler):
    """Contrastive search (Su et al. 2022, A Contrastive Framework for Neural Text Generation):
    among the k most probable next tokens v, pick
        argmax_v (1 - alpha) * P(v | x_<t) - alpha * max_j cos(h_v, h_j),
    where h_v is the final-layer hidden state of the candidate and h_j those of every earlier
    (non-padding) position, context included. alpha = 0 is greedy search."""

    alpha: float
    k: int
    aliases = {"penalty_alpha": "alpha", "top_k": "k"}
    paper = "Su et al. 2022, A Contrastive Framework for Neural Text Generation"
    strategy = "contrastive"

    def __post_init__(self) -> None:
        check_float(self.alpha, "alpha", "in [0, 1]", lambda v: 0 <= v <= 1)
        check_int(self.k, "k", ">= 1", lambda v: v >= 1)

    @torch.inference_mode()
    def decode(self, model, contexts, max_new_tokens, eos_id, pad_id, device, seeds=()) -> list[Continuation]:
        ids, mask = left_pad(contexts, pad_id, device)
        pos = positions(mask)
        out = model_logits(model, ids, mask, pos, hidden=True)
        history = torch.nn.functional.normalize(out.hidden.float(), dim=-1)
        logits, cache, pos = out.logits[:, -1, :].float(), out.cache, pos[:, -1:]
        batch, k = len(contexts), min(self.k, logits.shape[-1])
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        defer_row_selection(cache)  # the chosen rows and their repeats are gathered when appending
        chosen = torch.arange(batch, device=device)
        steps = []
        for _ in range(max_new_tokens):
            logprobs = torch.log_softmax(logits, dim=-1)
            top_lp, top_ids = logprobs.topk(k, dim=-1)
            cache.reorder_cache(chosen.repeat_interleave(k))  # each row's cache, once per candidate
            cand_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            cand = model_logits(model, top_ids.reshape(-1, 1), cand_mask.repeat_interleave(k, 0),
                                (pos + 1).repeat_interleave(k, 0), cache, hidden=True)
            cand_hidden = torch.nn.functional.normalize(cand.hidden[:, -1].float(), dim=-1)
            penalty = self._degeneration_penalty(cand_hidden.view(batch, k, -1), history, mask)
            choice = ((1 - self.alpha) * top_lp.exp() - self.alpha * penalty).argmax(dim=-1)
            chosen = torch.arange(batch, device=device) * k + choice
            token = top_ids.gather(-1, choice[:, None])[:, 0]
            token_lp = top_lp.gather(-1, choice[:, None])[:, 0]
            steps.append((token, token_lp, token_lp))
            if eos_id is not None:
                finished |= token == eos_id
            if bool(finished.all()):
                break
            logits = cand.logits[chosen, -1].float()
            history = torch.cat([history, cand_hidden[chosen][:, None]], dim=1)
            mask, pos = cand_mask, pos + 1
        return cut_at_eos(*(torch.stack(s, dim=1).cpu() for s in zip(*steps)), eos_id)

    @staticmethod
    def _degeneration_penalty(candidates: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """max over earlier real positions of the cosine similarity, per (row, candidate)."""
        similarity = torch.einsum("bkd,btd->bkt", candidates, history)
        similarity = similarity.masked_fill(mask[:, None, :] == 0, float("-inf"))
        return similarity.max(dim=-1).values
