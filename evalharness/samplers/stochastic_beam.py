"""Stochastic beam search: Gumbel-top-k sampling over whole sequences (Kool et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from evalharness.generation.decoding import Continuation, left_pad, model_logits, positions, teacher_forced_logprobs
from evalharness.errors import UserError
from evalharness.samplers.base import OMIT_DEFAULT, SAMPLERS, Sampler, check_int

MAX_ROWS = 512
"""Prompts are searched in chunks of at most this many beam rows (as beam search is): the
float64 Gumbel arithmetic holds several (rows, vocabulary) tensors at once."""

NEG_INF = float("-inf")


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def gumbels_with_maximum(locations: torch.Tensor, maximum: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gumbel(locations) samples conditioned on their maximum being `maximum` (Kool et al. 2019,
    eq. (23) and appendix B): with G = locations + noise (noise ~ Gumbel(0)) and Z = max G,
        G~ = -log(exp(-T) - exp(-Z) + exp(-G)),
    computed stably as T - max(0, v) - log1p(exp(-|v|)), v = T - G + log(1 - exp(G - Z)).
    The child holding the unconditioned maximum gets exactly T. Rows whose maximum is -inf
    (empty beam slots) give -inf everywhere."""
    perturbed = locations + noise
    top = perturbed.max(dim=-1, keepdim=True).values
    target = maximum.unsqueeze(-1)
    v = target - perturbed + log1mexp(perturbed - top)
    shifted = target - v.clamp(min=0) - torch.log1p(torch.exp(-v.abs()))
    return torch.where(torch.isfinite(target), shifted.nan_to_num(nan=NEG_INF), NEG_INF)


def gumbel_noise(generators: Sequence[torch.Generator], beams: int, vocab: int, device) -> torch.Tensor:
    """(len(generators) * beams, vocab) standard Gumbel noise, each prompt's block from its own
    generator, so a prompt's draws do not depend on the rest of the batch."""
    uniforms = torch.cat([torch.rand((beams, vocab), generator=g, dtype=torch.float64, device=device)
                          for g in generators])
    return -torch.log(-torch.log(uniforms))


@SAMPLERS.register("stochastic_beam")
@dataclass(frozen=True)
class StochasticBeam(Sampler):
    """Stochastic beam search (Kool, van Hoof & Welling 2019, Stochastic Beams and Where to Find
    Them: the Gumbel-Top-k Trick for Sampling Sequences Without Replacement), the "Stochastic
    Beam, b=16" row of Holtzman et al. 2019, Table 1 (their gen.py `gumbel_sbs_decode`).

    Every hypothesis y carries phi(y) = log P(y | context) and a perturbed score G(y); the root
    has G = 0. The children y + v of an alive hypothesis get Gumbel(phi(y + v)) samples
    conditioned on their maximum being G(y) (the truncated-Gumbel shift of Kool et al.). Each
    step keeps, per prompt, the num_beams largest G among the alive hypotheses' children and
    the finished hypotheses; a kept child ending in end-of-text is finished: never expanded, it
    keeps its slot while it ranks in the top num_beams. The search stops at the token budget,
    or once a prompt's best finished G exceeds every alive G (descendants never exceed their
    ancestor's G).

    Output (default): the hypothesis with the largest G among the finished ones and those alive
    at the budget — a finished hypothesis only when its G beats every alive one's. The leaves
    of the search tree are the sequences that end with end-of-text and those that reach the
    budget; their G are independent Gumbel(log P(leaf)) (Kool et al.), so the leaf with the
    largest G is an exact sample from the model's distribution over whole sequences, with or
    without end-of-text, for every num_beams (the Gumbel-max trick; that leaf has G = 0 and is
    never pruned). It is the same *distribution* as num_beams = 1, not the same draw: the
    noise is drawn per beam, so a different num_beams consumes the generator differently.
    Without end-of-text the final beam is moreover a sample of num_beams sequences without
    replacement.

    `prefer_finished: true` is gen.py's rule instead: any finished hypothesis (the best one)
    in preference to every alive one, else the alive one with the largest G. That favours
    sequences that end early (measured in the tests: the share ending with end-of-text rises
    well above its probability under the model). Differences from gen.py, each a bug or
    shortcut there: the parent's log-probability follows its beam when beams are reordered
    (gen.py adds the new token to whichever beam sat in that slot before), finished hypotheses
    are not expanded further, and the search stops on G rather than on log-likelihood.

    Noise: num_beams x vocabulary uniforms per step from the prompt's own generator, on the
    model's device (batch-invariant; CPU and CUDA draw different streams). logprobs_model are
    recomputed by one teacher-forced pass; logprobs_sampler repeat them: the sequence is a
    draw from the model's own distribution (temperature 1, nothing truncated), which is also
    what gen.py records for it."""

    num_beams: int
    prefer_finished: bool = field(default=False, metadata={OMIT_DEFAULT: True})
    paper = ("Kool, van Hoof & Welling 2019, Stochastic Beams and Where to Find Them; "
             "Holtzman et al. 2019 (Table 1, Stochastic Beam)")
    strategy = "stochastic_beam"

    def __post_init__(self) -> None:
        check_int(self.num_beams, "num_beams", ">= 1", lambda v: v >= 1)
        if not isinstance(self.prefer_finished, bool):
            raise UserError(f"prefer_finished: must be true or false (got {self.prefer_finished!r})")

    def decode(self, model, contexts, max_new_tokens, eos_id, pad_id, device, seeds=()) -> list[Continuation]:
        chunk = max(1, MAX_ROWS // self.num_beams)
        out: list[Continuation] = []
        for start in range(0, len(contexts), chunk):
            part = contexts[start:start + chunk]
            beams = self.search(model, part, seeds[start:start + chunk], max_new_tokens, eos_id, pad_id, device)
            tokens = beams.results(self.prefer_finished)
            logprobs = teacher_forced_logprobs(model, part, tokens, pad_id, device)
            out += [Continuation(t, lp, list(lp), eos_id is not None and t[-1:] == [eos_id])
                    for t, lp in zip(tokens, logprobs)]
        return out

    @torch.inference_mode()
    def search(self, model, contexts, seeds, max_new_tokens, eos_id, pad_id, device) -> "Beams":
        """The search itself; the final state holds every prompt's beam (alive hypotheses by
        decreasing G: without end-of-text, a Gumbel-top-k sample of num_beams sequences
        without replacement) and its best finished hypothesis."""
        k = self.num_beams
        ids, mask = left_pad(contexts, pad_id, device)
        pos = positions(mask)
        out = model_logits(model, ids, mask, pos)
        out.cache.batch_repeat_interleave(k)
        beams = Beams(len(contexts), k, device)
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        logits, cache = out.logits[:, -1, :].float().repeat_interleave(k, 0), out.cache
        mask, pos = mask.repeat_interleave(k, 0), pos[:, -1:].repeat_interleave(k, 0)
        for step in range(max_new_tokens):
            locations = beams.phi.view(-1, 1) + torch.log_softmax(logits.double(), dim=-1)
            noise = gumbel_noise(generators, k, logits.shape[-1], device)
            scores = gumbels_with_maximum(locations, beams.expandable(), noise)
            parents, tokens = beams.advance(locations, scores, eos_id, filler=pad_id)
            if beams.all_done() or step == max_new_tokens - 1:
                break
            cache.batch_select_indices(parents)
            mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1), pos + 1
            step_out = model_logits(model, tokens[:, None], mask, pos, cache)
            logits, cache = step_out.logits[:, -1, :].float(), step_out.cache
        return beams


class Beams:
    """The search state of a batch of prompts: num_beams hypotheses each (rows b*k ... b*k+k-1),
    alive or finished, with their perturbed scores g and log-probabilities phi."""

    def __init__(self, batch: int, k: int, device) -> None:
        self.batch, self.k, self.device = batch, k, device
        self.g = torch.full((batch, k), NEG_INF, dtype=torch.float64, device=device)
        self.g[:, 0] = 0.0  # the root; the other slots start empty
        self.phi = torch.zeros((batch, k), dtype=torch.float64, device=device)
        self.finished = torch.zeros((batch, k), dtype=torch.bool, device=device)
        self.tokens = torch.zeros((batch * k, 0), dtype=torch.long, device=device)
        self.best_g = torch.full((batch,), NEG_INF, dtype=torch.float64, device=device)
        self.best_tokens: list[list[int] | None] = [None] * batch

    def expandable(self) -> torch.Tensor:
        """(batch * k,) the g of each row whose children compete (-inf: finished or empty)."""
        return self.g.masked_fill(self.finished, NEG_INF).view(-1)

    def advance(self, locations: torch.Tensor, scores: torch.Tensor, eos_id: int | None,
                filler: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the k largest g among the alive hypotheses' children and the finished
        hypotheses (which stay, unexpanded, while they rank in the top k; Kool et al.'s top-k
        set); a kept child ending in end-of-text is finished. Returns (parent rows, the token
        each row feeds the model next: `filler` for finished rows)."""
        width = scores.shape[-1] * self.k
        candidates = torch.cat([scores.view(self.batch, width), self.g.masked_fill(~self.finished, NEG_INF)], dim=-1)
        self.g, flat = candidates.topk(self.k, dim=-1)
        carried = flat >= width
        slot = torch.where(carried, flat - width, torch.div(flat, scores.shape[-1], rounding_mode="floor"))
        child = flat.clamp(max=width - 1)
        tokens = torch.where(carried, filler, child % scores.shape[-1])
        self.phi = torch.where(carried, self.phi.gather(-1, slot), locations.view(self.batch, width).gather(-1, child))
        parents = (torch.arange(self.batch, device=self.device)[:, None] * self.k + slot).view(-1)
        self.tokens = torch.cat([self.tokens[parents], tokens.view(-1, 1)], dim=-1)
        ended = ~carried & (tokens == eos_id) if eos_id is not None else torch.zeros_like(carried)
        self.finished = carried | ended
        self._record_finished(ended)
        return parents, tokens.view(-1)

    def _record_finished(self, ended: torch.Tensor) -> None:
        """Keep each prompt's finished hypothesis with the largest g (even once pushed out of the beam)."""
        best, slot = self.g.masked_fill(~ended, NEG_INF).max(dim=-1)
        for b in (best > self.best_g).nonzero().view(-1).tolist():
            self.best_tokens[b] = self.tokens[b * self.k + int(slot[b])].tolist()
        self.best_g = torch.maximum(self.best_g, best)

    def all_done(self) -> bool:
        """No alive hypothesis can still beat a prompt's best finished one (descendants never
        exceed their ancestor's g)."""
        alive = self.g.masked_fill(self.finished, NEG_INF).max(dim=-1).values
        return bool((self.best_g > alive).all())

    def results(self, prefer_finished: bool = False) -> list[list[int]]:
        """Per prompt: the hypothesis with the largest g among the best finished one and those
        alive (the exact sample); with `prefer_finished` (gen.py's rule), the best finished
        hypothesis whenever there is one, else the alive one with the largest g."""
        alive_g, slot = self.g.masked_fill(self.finished, NEG_INF).max(dim=-1)
        alive = self.tokens[torch.arange(self.batch, device=self.device) * self.k + slot].tolist()
        take_finished = [finished is not None and (prefer_finished or best > top)
                         for finished, best, top in zip(self.best_tokens, self.best_g.tolist(), alive_g.tolist())]
        return [finished if take else row for finished, row, take in zip(self.best_tokens, alive, take_finished)]
