"""The sampler contract, its registry and the parameter checks every sampler shares."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import torch

from evalharness.errors import UserError
from evalharness.registry import Registry


class Sampler:
    """Base class: a frozen dataclass whose fields are the sampler's YAML parameters.

    `strategy` tells the decoding loop what to do with the processed scores:
    "sample" draws from softmax(process(logits)); "greedy" takes its argmax; "beam",
    "stochastic_beam" and "contrastive" are search methods that run their own loop:
    `decode(model, contexts, max_new_tokens, eos_id, pad_id, device, seeds)` (see their modules).
    `process` follows the logits-processor contract of transformers: it returns new
    scores (excluded tokens at -inf) and never modifies its input in place.
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    strategy: ClassVar[str] = "sample"
    aliases: ClassVar[dict[str, str]] = {}
    """Other names the YAML may give a parameter: transformers' GenerationConfig name -> field
    (top_p: p). The experiment file maps them to the field before building the sampler, so run
    names and records always use the field's own name."""

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.clone()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.process(scores)

    @classmethod
    def parameters(cls) -> list[tuple[str, Any]]:
        """(name, default or None when required), for `list` and run names: the sampler's own
        fields in their order, then the keyword-only ones a family shares (Truncation's
        temperature and interpolation), so that names read top_k-k=40-temperature=0.7."""
        ordered = sorted(fields(cls), key=lambda f: f.kw_only)  # stable: own fields keep their order
        return [(f.name, None if f.default is MISSING else f.default) for f in ordered]

    def parameter_values(self) -> list[tuple[str, Any]]:
        """(name, value) in the order of parameters()."""
        return [(name, getattr(self, name)) for name, _ in self.parameters()]


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


@dataclass(frozen=True)
class Truncation(Sampler):
    """The family of samplers that keep a support of the next-token distribution (top-k, top-p,
    typical, epsilon, eta, min-p): temperature first (as in transformers), then the sampler's
    support rule `keep` on the tempered scores, then, with interpolation m > 0, the mixture
    (1 - m) * truncated + m * the tempered full distribution (see `truncate`).

    A member declares its own parameter fields, validates them in `check`, and defines `keep`."""

    temperature: float = field(default=1.0, kw_only=True)
    interpolation: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        self.check()
        check_temperature(self)
        check_interpolation(self)

    def check(self) -> None:
        """Validate the member's own parameters (errors name the YAML key)."""

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        """The support on tempered `scores`: a boolean mask, True where a token is kept."""
        raise NotImplementedError

    def process(self, scores: torch.Tensor) -> torch.Tensor:
        scores = apply_temperature(scores, self.temperature)
        return truncate(scores, self.keep(scores), self.interpolation)


def check_float(value: Any, key: str, rule: str, ok) -> float:
    """Validate a real-valued parameter; the error names the key and the rule."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key}: must be a number {rule} (got {value!r})")
    value = float(value)
    if not math.isfinite(value) or not ok(value):
        raise UserError(f"{key}: must be {rule} (got {value!r})")
    return value


def check_int(value: Any, key: str, rule: str, ok) -> int:
    """Validate an integer parameter (2.0 is refused: it is probably a typo for a float key)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}: must be an integer {rule} (got {value!r})")
    if not ok(value):
        raise UserError(f"{key}: must be {rule} (got {value!r})")
    return value


def check_temperature(sampler: Any) -> None:
    t = check_float(sampler.temperature, "temperature", "> 0", lambda v: v > 0)
    object.__setattr__(sampler, "temperature", t)


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature comes first, as in transformers: truncation then sees the tempered distribution."""
    return scores / temperature if temperature != 1.0 else scores.clone()


def keep_only(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """New scores with every token outside `keep` at -inf."""
    return scores.masked_fill(~keep, float("-inf"))


def check_interpolation(sampler: Any) -> None:
    m = check_float(sampler.interpolation, "interpolation", "in [0, 1]", lambda v: 0 <= v <= 1)
    object.__setattr__(sampler, "interpolation", m)


def truncate(scores: torch.Tensor, keep: torch.Tensor, interpolation: float = 0.0) -> torch.Tensor:
    """The truncated distribution, optionally interpolated with the untruncated one.

    `scores` are the (tempered) logits, `keep` the truncation's support. With interpolation m
    the result is log((1 - m) * softmax(truncated) + m * softmax(scores)): the `-m` option
    ("mass of original dist to interpolate") of Holtzman et al.'s gen.py, used for their
    HUSE rows so that human text keeps a non-zero probability. Every token is then in the
    support (m > 0). The mixture is formed in log space (float64, logaddexp), so tokens far
    outside the truncation keep their tiny probabilities instead of underflowing; m = 0
    returns exactly keep_only(scores, keep)."""
    truncated = keep_only(scores, keep)
    if interpolation == 0.0:
        return truncated
    if interpolation == 1.0:
        return scores.clone()
    inside = torch.log_softmax(truncated.double(), dim=-1) + math.log1p(-interpolation)
    everywhere = torch.log_softmax(scores.double(), dim=-1) + math.log(interpolation)
    return torch.logaddexp(inside, everywhere).to(scores.dtype)


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Softmax in float64, so thresholds and cumulative sums are not blurred by rounding."""
    return torch.softmax(scores.double(), dim=-1)


class Exponentials(NamedTuple):
    """A row's logits z in float64 with their exponentials, from one pass of exp."""

    z: torch.Tensor
    top: torch.Tensor
    """max z, (rows, 1)."""
    weight: torch.Tensor
    """exp(z - top): the unnormalised probabilities."""
    total: torch.Tensor
    """sum of weight, (rows, 1): Z = exp(top) * total."""
    mean_logit: torch.Tensor
    """sum_x P(x) z(x), (rows, 1); a -inf logit has P = 0 and adds 0 (its NaN term is skipped)."""


def exponentials(scores: torch.Tensor) -> Exponentials:
    z = scores.double()
    top = z.max(dim=-1, keepdim=True).values
    weight = torch.exp(z - top)
    total = weight.sum(dim=-1, keepdim=True)
    return Exponentials(z, top, weight, total, (weight * z).nansum(dim=-1, keepdim=True) / total)


def with_entropy(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, entropy in nats), float64: H = log Z - sum_x P(x) z(x)."""
    e = exponentials(scores)
    return e.weight / e.total, e.top + torch.log(e.total) - e.mean_logit


def keep_argmax(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Never truncate to an empty set: the most likely token always stays."""
    top = scores.argmax(dim=-1, keepdim=True)
    return keep.scatter(-1, top, True)


def sorted_rows(values: torch.Tensor) -> torch.Tensor:
    """Every row of a 2-D tensor sorted ascending: values only, no indices.

    Truncation needs the order of a row's values, not which token holds which value, and a
    values-only sort is what CPUs do fast: numpy's vectorised sort is ~5x torch.sort on CPU
    (which always carries indices). One thread: sharing the rows over a thread pool was no
    faster inside the decoding loop (top-p and typical decoding, 32 and 128 rows, 2 cores,
    alternating runs), though it was outside it; torch's own threads between ops are the likely
    cause (not verified). Other devices use torch.sort."""
    if values.device.type != "cpu":
        return torch.sort(values, dim=-1).values
    rows = values.detach().numpy().copy()
    rows.sort(axis=-1)
    return torch.from_numpy(rows)


def first_reaching(mass: torch.Tensor, p: float) -> torch.Tensor:
    """(rows, 1) index of the first column where the running sum of `mass` (float64, in the
    order given) reaches p times the row's total: the last member of the smallest prefix
    holding a share p of the mass. At most the last column, so some token always stays."""
    cumulative = mass.cumsum(dim=-1)
    last = (cumulative < p * cumulative[:, -1:]).sum(dim=-1, keepdim=True)
    return last.clamp(max=mass.shape[-1] - 1)
