"""Beam search, through transformers' own implementation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalharness.decoding import Continuation, left_pad, teacher_forced_logprobs
from evalharness.samplers.base import SAMPLERS, Sampler, check_float, check_int


MAX_BEAM_ROWS = 512


@SAMPLERS.register("beam")
@dataclass(frozen=True)
class Beam(Sampler):
    """Beam search (e.g. Graves 2012; Holtzman et al. 2019 Table 1, b=16): keep the num_beams
    highest-scoring partial continuations, score = sum of log-probabilities / length**length_penalty.

    Runs transformers' `generate` with a GenerationConfig built from scratch (greedy within
    beams, no sampling, no repetition penalty, no n-gram blocking) so that no library or model
    default leaks in. Log-probabilities are recomputed afterwards by one teacher-forced pass."""

    num_beams: int
    length_penalty: float = 1.0
    paper = "Holtzman et al. 2019 (Table 1 baseline); Graves 2012, Sequence Transduction with RNNs"
    strategy = "beam"

    def __post_init__(self) -> None:
        check_int(self.num_beams, "num_beams", ">= 1", lambda v: v >= 1)
        check_float(self.length_penalty, "length_penalty", "a finite number", lambda v: True)

    def decode(self, model, contexts, max_new_tokens, eos_id, pad_id, device, seeds=()) -> list[Continuation]:
        # generate() runs batch * num_beams rows at once; past ~512 rows it gets slower per
        # prompt (measured on CPU), so big batches are searched in fixed chunks of prompts.
        chunk = max(1, MAX_BEAM_ROWS // self.num_beams)
        out: list[Continuation] = []
        for start in range(0, len(contexts), chunk):
            out += self._search(model, contexts[start:start + chunk], max_new_tokens, eos_id, pad_id, device)
        return out

    def _search(self, model, contexts, max_new_tokens, eos_id, pad_id, device) -> list[Continuation]:
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
        continuations = [strip_after_eos(row, eos_id) for row in out[:, ids.shape[1]:].tolist()]
        logprobs = teacher_forced_logprobs(model, contexts, [c for c, _ in continuations], pad_id, device)
        return [Continuation(toks, lp, list(lp), stopped) for (toks, stopped), lp in zip(continuations, logprobs)]


def strip_after_eos(row: list[int], eos_id: int | None) -> tuple[list[int], bool]:
    """generate() pads finished beams with pad tokens after EOS; keep up to and including EOS."""
    if eos_id is not None and eos_id in row:
        return row[: row.index(eos_id) + 1], True
    return row, False
