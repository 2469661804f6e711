"""The scorer contract, its registry and the bootstrap every scorer shares."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

from evalharness.records import Generation, ScoreResult
from evalharness.registry import Registry

HIGHER, LOWER, CLOSER = "higher", "lower", "closer_to_human"


@dataclass(frozen=True)
class ScoringContext:
    """What a scorer may use besides the run's own generations."""

    human: Sequence[Generation]
    """Human continuations, in the same prompt order as the run's generations."""
    resamples: int = 200
    """Bootstrap resamples over prompts for the confidence intervals (0 = no CI)."""
    seed: int = 0
    """Bootstrap seed: the same for every run, so runs are resampled on the same prompt sets."""
    cache_dir: Path | None = None
    """Where expensive per-experiment artefacts (human MAUVE features) may be cached."""
    model_name: str = ""
    """The experiment's model reference, for scorers that featurise with the evaluated model."""
    device: str = "cpu"
    """Torch device for scorers that run a network."""
    results_dir: Path | None = None
    """The experiment's results folder, for scorers that read more than the generations (a run's
    human_logprobs.jsonl, the judgements of human raters)."""
    runs: tuple[str, ...] = ()
    """Every run of the experiment, human first."""
    contexts: Sequence[Sequence[int]] = ()
    """Context token ids of each prompt, in the same order as `human` (empty when unknown), for
    scorers that score continuations given their context (detectability's GLTR features)."""
    context_texts: Sequence[str] = ()
    """Context text of each prompt, in the same order as `human` (empty when unknown), for
    scorers that read the context with another tokenizer or an embedding model (the judges)."""


class Scorer:
    """Base class: a frozen dataclass whose fields are the scorer's YAML options.

    Subclasses set `metrics` (metric name -> direction: higher, lower or closer_to_human),
    `needs_human`, a docstring citing the paper with the exact definition, and implement
    `score(generations, ctx) -> ScoreResult`.
    """

    name: ClassVar[str]
    metrics: ClassVar[dict[str, str]] = {}
    needs_human: ClassVar[bool] = False
    extra_options: ClassVar[bool] = False
    """True: YAML keys besides options() are accepted and handed to from_options (the `evaluate`
    scorer passes them on to its metric)."""

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        raise NotImplementedError

    def inputs_fingerprint(self, ctx: ScoringContext) -> str | None:
        """What the scores depend on besides the run's generations and the scorer's options
        (e.g. a file of human judgements), so that cached scores are recomputed when it changes."""
        return None

    @classmethod
    def options(cls) -> list[str]:
        return [f.name for f in fields(cls)] if hasattr(cls, "__dataclass_fields__") else []

    @classmethod
    def from_options(cls, options: dict) -> "Scorer":
        """The scorer a YAML `scorers:` entry describes (`options`: its keys besides `name`)."""
        return cls(**options)

    @property
    def key(self) -> str:
        """What identifies this scorer among an experiment's scorers: one entry per key."""
        return self.name


SCORERS: Registry[type[Scorer]] = Registry("scorer")


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over prompts.

    `statistic(indices)` recomputes the metrics on the prompts at `indices` (drawn with
    replacement). Returns metric -> (low, high) at the given level; metrics that come out
    NaN in a resample are dropped from it (e.g. a resample with no n-grams).
    """
    if resamples <= 0 or n == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        for metric, value in statistic(idx).items():
            draws.setdefault(metric, []).append(value)
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for metric, values in draws.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            low, high = np.percentile(arr, [tail, 100.0 - tail])
            out[metric] = (float(low), float(high))
    return out


def centred_bootstrap_ci(statistic: Callable[[np.ndarray], dict[str, float]], n: int, resamples: int,
                         seed: int, values: dict[str, float],
                         bounds: dict[str, tuple[float, float]] | None = None) -> dict[str, tuple[float, float]]:
    """bootstrap_ci (same resamples, same seed), each interval then shifted by (point value -
    median of the resamples) and clipped to the metric's `bounds`. For statistics whose every
    resample is offset in the same direction by the resampling itself (duplicated prompts),
    not by sampling variability: the shift keeps the spread and removes the offset."""
    draws: dict[str, list[float]] = {}

    def recording(idx: np.ndarray) -> dict[str, float]:
        out = statistic(idx)
        for metric, value in out.items():
            draws.setdefault(metric, []).append(value)
        return out

    raw = bootstrap_ci(recording, n, resamples, seed)
    out = {}
    for metric, (low, high) in raw.items():
        if metric not in values:
            continue
        finite = np.asarray(draws[metric], dtype=float)
        shift = values[metric] - float(np.median(finite[np.isfinite(finite)]))
        lowest, highest = (bounds or {}).get(metric, (-np.inf, np.inf))
        out[metric] = (float(max(low + shift, lowest)), float(min(high + shift, highest)))
    return out
