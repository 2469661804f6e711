"""Beam search: transformers' algorithm (generate with num_beams), run by our own batched loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.generation.cache_rows import defer_row_selection
from evalharness.generation.decoding import Continuation, left_pad, model_logits, positions, teacher_forced_logprobs
from evalharness.samplers.base import SAMPLERS, Sampler, check_float, check_int


MAX_BEAM_ROWS = 512
"""Prompts are searched in chunks of at most this many beam rows (prompts x num_beams): the
cache and the (rows, vocabulary) log-probabilities grow with it."""

NEG = -1.0e9
"""transformers' stand-in for -inf in beam scores (kept: the scores must be the same floats)."""


@SAMPLERS.register("beam")
@dataclass(frozen=True)
class Beam(Sampler):
    """Beam search (e.g. Graves 2012; Holtzman et al. 2019 Table 1, b=16): keep the num_beams
    highest-scoring partial continuations, score = sum of log-probabilities / length**length_penalty.

    The search is transformers' `generate(num_beams=..., do_sample=False, early_stopping=False)`
    (5.x `_beam_search`), step for step and float for float, with nothing else switched on (no
    repetition penalty, no n-gram blocking, no library or model default), in our own loop:
    each prompt's context is run once and its cache repeated for its beams (generate runs it
    num_beams times), and the cache is reordered by beam lazily, in the copy that appends the
    next token (DynamicCache copies it twice). `generate` itself stays available as
    `search_with_generate` (the reference in tests and benchmarks). Log-probabilities are
    recomputed afterwards by one teacher-forced pass.

    Identity with `generate` is tested on CPU (tiny and builtin models, with and without
    end-of-text). It rests on the context's logits and keys/values being the same floats
    whether a row is computed once or num_beams times in a batch: true of CPU matmuls here
    (checked bit for bit); on a GPU a kernel chosen by batch shape could differ in the last
    bits and so break a near-tie differently (as generate itself can between chunk sizes)."""

    num_beams: int
    length_penalty: float = 1.0
    paper = "Holtzman et al. 2019 (Table 1 baseline); Graves 2012, Sequence Transduction with RNNs"
    strategy = "beam"

    def __post_init__(self) -> None:
        check_int(self.num_beams, "num_beams", ">= 1", lambda v: v >= 1)
        check_float(self.length_penalty, "length_penalty", "a finite number", lambda v: True)

    def decode(self, model, contexts, max_new_tokens, eos_id, pad_id, device, seeds=(),
               search=None) -> list[Continuation]:
        search = search or self.search
        chunk = max(1, MAX_BEAM_ROWS // self.num_beams)
        out: list[Continuation] = []
        for start in range(0, len(contexts), chunk):
            part = contexts[start:start + chunk]
            found = search(model, part, max_new_tokens, eos_id, pad_id, device)
            logprobs = teacher_forced_logprobs(model, part, [t for t, _ in found], pad_id, device)
            out += [Continuation(t, lp, list(lp), stopped) for (t, stopped), lp in zip(found, logprobs)]
        return out

    @torch.inference_mode()
    def search(self, model, contexts, max_new_tokens, eos_id, pad_id, device) -> list[tuple[list[int], bool]]:
        """Per prompt: the best finished hypothesis (tokens up to and including end-of-text, and
        whether it ended so). Mirrors transformers' `_beam_search` (comments name its steps):
        per prompt, the 2 * num_beams best children of the running beams by summed log-prob;
        those ending in end-of-text (or reaching the token budget) among the first num_beams
        compete for the num_beams finished slots with score / length**length_penalty; the
        best num_beams unfinished ones run on. The search stops at the budget or when no
        prompt's running beams can still beat its worst finished slot (early_stopping=False
        heuristic: the best running score at the current length)."""
        k, lp_exp = self.num_beams, self.length_penalty
        batch = len(contexts)
        if max_new_tokens <= 0 or batch == 0:
            return [([], False)] * batch
        ids, mask = left_pad(contexts, pad_id, device)
        pos = positions(mask)
        out = model_logits(model, ids, mask, pos)
        cache = out.cache
        cache.batch_repeat_interleave(k)
        defer_row_selection(cache)
        logits = out.logits[:, -1, :].float().repeat_interleave(k, 0)
        mask, pos = mask.repeat_interleave(k, 0), pos[:, -1:].repeat_interleave(k, 0)

        beams_to_keep = 2 * k  # max(2, 1 + number of end-of-text ids) * num_beams, one id at most
        top_mask = torch.arange(beams_to_keep, device=device) < k
        offset = (torch.arange(batch, device=device) * k)[:, None]
        fill = -1 if eos_id is None else (pad_id or eos_id)
        running = torch.full((batch, k, max_new_tokens), fill, dtype=torch.long, device=device)
        finished = running.clone()
        running_scores = torch.zeros((batch, k), dtype=torch.float, device=device)
        running_scores[:, 1:] = NEG
        scores = torch.full((batch, k), NEG, dtype=torch.float, device=device)
        is_finished = torch.zeros((batch, k), dtype=torch.bool, device=device)
        improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            # b. log-probs plus the running scores; c. the top 2k children
            vocab = logits.shape[-1]
            log_probs = torch.log_softmax(logits, dim=-1).view(batch, k, vocab) + running_scores[:, :, None]
            top_scores, top_flat = torch.topk(log_probs.view(batch, -1), k=beams_to_keep)
            parent = top_flat // vocab
            token = top_flat % vocab
            top_seqs = running.gather(1, parent[:, :, None].expand(-1, -1, max_new_tokens)).clone()
            top_seqs[:, :, step] = token
            # d. stopping criteria: end-of-text, or the budget
            hits = torch.full((batch, beams_to_keep), step + 1 >= max_new_tokens, dtype=torch.bool, device=device)
            if eos_id is not None:
                hits = hits | (token == eos_id)
            # e. the k best unfinished children run on
            run_scores = top_scores + hits.to(torch.float32) * NEG
            keep = torch.topk(run_scores, k=k)[1]
            running = top_seqs.gather(1, keep[:, :, None].expand(-1, -1, max_new_tokens))
            running_scores = run_scores.gather(1, keep)
            parents = (parent.gather(1, keep) + offset).view(-1)
            # f. finished children among the first k compete for the finished slots
            just_finished = hits & top_mask[None, :]
            candidate = top_scores / ((step + 1) ** lp_exp)
            candidate = candidate + (~improvable).to(torch.float32) * NEG
            candidate = candidate + (~just_finished) * NEG
            merged_scores = torch.cat((scores, candidate), dim=1)
            best = torch.topk(merged_scores, k=k)[1]
            finished = torch.cat((finished, top_seqs), dim=1).gather(1, best[:, :, None].expand(-1, -1, max_new_tokens))
            scores = merged_scores.gather(1, best)
            is_finished = torch.cat((is_finished, just_finished), dim=1).gather(1, best)
            # g. can a running beam still beat the worst finished slot?
            best_running = running_scores[:, :1] / ((step + 1) ** lp_exp)
            worst_finished = torch.where(is_finished, torch.min(scores, dim=1, keepdim=True)[0], NEG)
            improvable = improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
            if not bool(improvable.any()) or bool(hits.all()):
                break
            cache.reorder_cache(parents)
            mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1), pos + 1
            step_out = model_logits(model, running[:, :, step].reshape(-1, 1), mask, pos, cache)
            logits, cache = step_out.logits[:, -1, :].float(), step_out.cache
        return [strip_after_eos(row, eos_id) for row in finished[:, 0, :step + 1].tolist()]

    def search_with_generate(self, model, contexts, max_new_tokens, eos_id, pad_id, device) -> list[tuple[list[int], bool]]:
        """The same search by transformers' `generate` (the reference; slower: it runs each
        context num_beams times and copies the cache twice per step)."""
        from transformers import GenerationConfig

        ids, mask = left_pad(contexts, pad_id, device)
        config = GenerationConfig(
            num_beams=self.num_beams, do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=0,
            length_penalty=self.length_penalty, early_stopping=False, num_return_sequences=1,
            repetition_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=eos_id, pad_token_id=pad_id,
            bos_token_id=None, use_cache=True,
        )
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        return [strip_after_eos(row, eos_id) for row in out[:, ids.shape[1]:].tolist()]


def strip_after_eos(row: list[int], eos_id: int | None) -> tuple[list[int], bool]:
    """Finished beams are padded with a filler after end-of-text; keep up to and including it."""
    if eos_id is not None and eos_id in row:
        return row[: row.index(eos_id) + 1], True
    return row, False
