"""The records that flow between stages. Each is frozen and round-trips through JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

HUMAN_RUN = "human"
"""Run name of the human continuations, scored exactly like every model run."""


class JsonRecord:
    """JSON round trip for the frozen record dataclasses (lists come back as tuples)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                value = data[f.name]
                kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


@dataclass(frozen=True)
class Prompt(JsonRecord):
    """One held-out human document cut into a context and its true continuation."""

    prompt_id: str
    """Stable id, e.g. "00042": the prompt's position in the seeded selection."""
    doc_id: str
    """Id of the source document (line number, jsonl `id` field or row index)."""
    context_text: str
    """The context as text (decoded from context_ids)."""
    context_ids: tuple[int, ...]
    """Token ids the model is conditioned on."""
    human_ids: tuple[int, ...]
    """The next max_new_tokens token ids of the document, ending with end-of-text when the
    document ended inside that window."""
    human_text: str
    """The human continuation as text, without the end-of-text token."""
    human_ended: bool
    """True when the document ended within max_new_tokens (human_ids then ends with EOS)."""


@dataclass(frozen=True)
class Generation(JsonRecord):
    """One continuation of one prompt by one run (or the human continuation, run="human")."""

    prompt_id: str
    """The Prompt it continues."""
    run: str
    """Run name, e.g. "top_p-p=0.95", or "human"."""
    text: str
    """Decoded continuation, without the end-of-text token."""
    token_ids: tuple[int, ...]
    """Generated token ids; ends with the end-of-text id iff stopped_by_eos."""
    num_tokens: int
    """len(token_ids)."""
    stopped_by_eos: bool
    """True when the continuation ended with end-of-text rather than at max_new_tokens."""
    logprobs_model: tuple[float, ...]
    """Natural-log probability of each token under the raw model (temperature 1, no truncation)."""
    logprobs_sampler: tuple[float, ...]
    """Natural-log probability of each token under the distribution it was drawn from.
    Search methods (greedy, beam, contrastive) draw from no distribution: they record the
    model's log-probability, as Holtzman et al.'s code does. Stochastic beam search records the
    model's too: its output is a draw from the model's own distribution over sequences."""

    @property
    def content_ids(self) -> tuple[int, ...]:
        """token_ids without the trailing end-of-text: what text-shape metrics look at."""
        return self.token_ids[:-1] if self.stopped_by_eos else self.token_ids


@dataclass(frozen=True)
class RunSpec:
    """One point of the sampler grid: a sampler name with concrete parameters."""

    name: str
    """Deterministic run name built from sampler and non-default parameters."""
    sampler: str
    """Registered sampler name, e.g. "top_p"."""
    params: tuple[tuple[str, Any], ...] = ()
    """(parameter, value) pairs in the sampler's field order."""

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class ScoreResult:
    """What one scorer says about one run."""

    values: dict[str, float]
    """Metric name -> value for the whole run."""
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Metric name -> 95% bootstrap interval over prompts (low, high)."""
    per_sample: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Metric name -> one value per generation, for metrics defined per text."""


# --- human typicality ratings --------------------------------------------------------------------
# The scale of one record field (judgements.csv's `typicality`): the annotation app collects
# ratings on it and the HUSE scorer reads them, so it lives here, below both.

TYPICALITY_SCALE: tuple[tuple[int, str, str], ...] = (
    (1, "Invalid", "not real text: broken, garbled or meaningless"),
    (2, "Rare", "could be real, but very strange or unlikely"),
    (3, "Specific", "plausible, but tied to an unusual topic, source or situation"),
    (4, "Average", "ordinary text, neither odd nor especially typical"),
    (5, "Typical", "the kind of text you would expect to come across"),
    (6, "Very typical", "exactly what you would expect a person to write"),
)
"""The six buckets of Holtzman et al.'s MTurk form: (value, label, help); labels as in the form,
help texts our own."""

LOWEST_RATING, HIGHEST_RATING = TYPICALITY_SCALE[0][0], TYPICALITY_SCALE[-1][0]

TYPICALITY_QUESTION = "How typical is this text?"
TYPICALITY_INSTRUCTIONS = (
    "Each text below is a short continuation of a longer document. Some were written by people, "
    "some by a computer program; you are not told which. Read each text and rate how typical it is: "
    "how much it looks like text you would expect to find, written by a person, in a document of "
    "this kind. Judge each text on its own, and go with your first impression.")
"""What people are told before they rate (the annotation page, the crowd template) and what a
judge model reads (scorers.judge_typicality): one wording, so that the two are asked the same."""


def scale_json() -> list[dict]:
    return [{"value": value, "label": label, "help": help_text} for value, label, help_text in TYPICALITY_SCALE]


def is_rating(value) -> bool:
    """An integer 1..6; bools (a JSON true) and floats (3.0) are not ratings."""
    return type(value) is int and LOWEST_RATING <= value <= HIGHEST_RATING
