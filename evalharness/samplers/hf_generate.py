"""Sampler `hf`: exactly what transformers' generate(do_sample=True, ...) draws from."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.generation import logits_process as warpers

from evalharness.samplers.base import SAMPLERS, Sampler, check_float, check_int, check_temperature

TRANSFORMERS_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "min_p": 0.0,
                         "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
"""GenerationConfig's library defaults for the sampling fields (GenerationConfig.
_get_default_generation_params in transformers 5; the class defaults in 4.x): what generate
uses when neither the caller nor the model's generation_config.json sets a field. min_p is
unset (None) there; here 0, which keeps every token: the same distribution."""


@SAMPLERS.register("hf")
@dataclass(frozen=True)
class HFGenerate(Sampler):
    """What a paper that "used top-p 0.9" with transformers most likely sampled from:
    `model.generate(do_sample=True, top_p=0.9)` applies transformers' whole warper chain, with its
    defaults for every field left unset, top_k=50 among them (so top-k 50 ∩ top-p 0.9).

    Parameters are GenerationConfig's sampling fields with transformers' defaults (temperature
    1.0, top_k 50, top_p 1.0, typical_p 1.0, min_p 0 = unset, epsilon_cutoff 0, eta_cutoff 0; a
    model's own generation_config.json is not consulted: write its values here). The scores go
    through transformers' own warpers, in the order GenerationMixin._get_logits_processor
    applies them: temperature (if != 1), top-k (if != 0), top-p (if < 1), min-p (if > 0),
    typical (if < 1), epsilon (if in (0, 1)), eta (if in (0, 1)), each keeping at least one
    token (min_tokens_to_keep=1, as generate does without beams). The run's manifest names the
    chain and the defaults it applied (`note`). Holtzman et al. 2019 for top-p, Fan et al. 2018
    for top-k; the others as in their own samplers."""

    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    typical_p: float = 1.0
    min_p: float = 0.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    paper = "transformers GenerationMixin.generate(do_sample=True): its warper chain and defaults"

    def __post_init__(self) -> None:
        check_temperature(self)
        check_int(self.top_k, "top_k", ">= 0 (0 turns top-k off)", lambda v: v >= 0)
        check_float(self.top_p, "top_p", "in (0, 1]", lambda v: 0 < v <= 1)
        check_float(self.typical_p, "typical_p", "in (0, 1]", lambda v: 0 < v <= 1)
        check_float(self.min_p, "min_p", "in [0, 1] (0: off)", lambda v: 0 <= v <= 1)
        check_float(self.epsilon_cutoff, "epsilon_cutoff", "in [0, 1)", lambda v: 0 <= v < 1)
        check_float(self.eta_cutoff, "eta_cutoff", "in [0, 1)", lambda v: 0 <= v < 1)

    def chain(self, device: torch.device | str = "cpu") -> list:
        """transformers' warpers for these settings, in generate's order."""
        out = []
        if self.temperature != 1.0:
            out.append(warpers.TemperatureLogitsWarper(self.temperature))
        if self.top_k != 0:
            out.append(warpers.TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            out.append(warpers.TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        if self.min_p > 0.0:
            out.append(warpers.MinPLogitsWarper(min_p=self.min_p, min_tokens_to_keep=1))
        if self.typical_p < 1.0:
            out.append(warpers.TypicalLogitsWarper(mass=self.typical_p, min_tokens_to_keep=1))
        if 0.0 < self.epsilon_cutoff < 1.0:
            out.append(warpers.EpsilonLogitsWarper(epsilon=self.epsilon_cutoff, min_tokens_to_keep=1))
        if 0.0 < self.eta_cutoff < 1.0:
            out.append(warpers.EtaLogitsWarper(epsilon=self.eta_cutoff, min_tokens_to_keep=1, **_device_argument(device)))
        return out

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        no_ids = torch.zeros((scores.shape[0], 0), dtype=torch.long, device=scores.device)
        scores = scores.clone()  # the contract: never modify the caller's scores
        for warper in self.chain(scores.device):
            scores = warper(no_ids, scores)
        return scores

    def note(self) -> str:
        """One line for the manifest: the chain applied, and which fields are at transformers'
        defaults (those a YAML leaves unset, or sets to the default)."""
        steps = ", ".join(type(w).__name__ for w in self.chain()) or "none (the model's full distribution)"
        defaults = ", ".join(f"{k}={v}" for k, v in TRANSFORMERS_DEFAULTS.items() if getattr(self, k) == v)
        return (f"as transformers' generate(do_sample=True): warpers in order: {steps}; "
                f"at transformers' defaults: {defaults or 'none'}")


def _device_argument(device) -> dict:
    """EtaLogitsWarper takes the device of its threshold tensor in recent transformers only."""
    return {"device": str(device)} if "device" in inspect.signature(warpers.EtaLogitsWarper).parameters else {}
