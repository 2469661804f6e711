"""Any Hugging Face `evaluate` module as a scorer: predictions = a run's texts, references = the
human continuations of the same prompts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalharness.errors import UserError, first_line
from evalharness.records import HUMAN_RUN, Generation, ScoreResult
from evalharness.scorers.base import SCORERS, Scorer, ScoringContext, bootstrap_ci

PROBE_TEXTS = (
    "The river rose during the night and the old bridge was closed.",
    "She wrote the first song of the album in a small room by the sea.",
    "Several ships were built at the yard before the war began.",
    "The team played its second season in the new stadium.",
    "A long road runs north from the city to the mountains.",
    "The church was rebuilt after the fire with money from the town.",
    "Later that year the king signed the treaty with his neighbours.",
    "Most of the early recordings were lost when the studio flooded.",
    "The school opened in the autumn with only twelve pupils.",
    "Many of the songs on the record were played on the radio.",
)
"""What preflight() runs the module on before any generation (predictions; the references
are the same texts rotated by one, so that no prediction equals its reference)."""

_MODULES: dict[tuple[str, str | None], Any] = {}


@contextlib.contextmanager
def _evaluate_offline(offline: bool):
    """evaluate reads HF_EVALUATE_OFFLINE at import time; set its flag for one load instead of
    letting it retry an unreachable Hub (offline, it uses its module cache)."""
    import evaluate.config

    before = evaluate.config.HF_EVALUATE_OFFLINE
    evaluate.config.HF_EVALUATE_OFFLINE = before or offline
    try:
        yield
    finally:
        evaluate.config.HF_EVALUATE_OFFLINE = before


def load_module(path: str, config_name: str | None, where: str):
    """evaluate.load(path) once per process, results kept in memory (no cache files). A local
    folder or script needs no network; anything else is a Hub id."""
    from evalharness.generation.models import hub_offline_mode, hub_reachable

    if (path, config_name) in _MODULES:
        return _MODULES[(path, config_name)]
    local = Path(path).expanduser().exists()
    offline = not local and (hub_offline_mode() or not hub_reachable())
    try:
        import evaluate

        with _evaluate_offline(offline):
            module = evaluate.load(str(Path(path).expanduser()) if local else path, config_name=config_name,
                                   keep_in_memory=True)
    except Exception as exc:  # any failure inside a third-party module script is the user's to fix
        hint = "; it is not a local folder and the Hugging Face Hub is unreachable" if offline else ""
        raise UserError(f"{where}: could not load evaluate module {path!r}: {first_line(exc)}{hint}") from None
    _MODULES[(path, config_name)] = module
    return module


def needs_references(module) -> bool:
    features = module.features if isinstance(module.features, list) else [module.features]
    return any("references" in f for f in features)


def numeric_outputs(result: Any, prefix: str, n: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The numbers in a module's result, flattened to `prefix.key[.subkey...]`: scalars, and
    lists of numbers; a list with one number per text (length n) is returned apart, as per-text
    values; another list gives `prefix.key.0`, `.1`, ... Strings, booleans and the like are skipped."""
    scalars: dict[str, float] = {}
    per_text: dict[str, np.ndarray] = {}

    def visit(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}.{key}", item)
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            scalars[name] = float(value)
        elif isinstance(value, (list, tuple, np.ndarray)) and len(value):
            array = np.asarray(value)
            if array.ndim != 1 or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
                return
            if len(array) == n:
                per_text[name] = array.astype(float)
            else:
                scalars.update({f"{name}.{i}": float(v) for i, v in enumerate(array)})

    if isinstance(result, dict):
        for key, value in result.items():
            visit(f"{prefix}.{key}", value)
    return scalars, per_text


@SCORERS.register("evaluate")
@dataclass(frozen=True)
class EvaluateMetric(Scorer):
    """Any Hugging Face `evaluate` module (https://huggingface.co/docs/evaluate), loaded with
    `evaluate.load(path)` (`path`: a local module folder or script, which works offline, or a
    Hub id such as "rouge") and run as `module.compute(predictions=<the run's texts>,
    references=<the human continuations of the same prompts>, **kwargs)`; references are
    passed only when the module declares them. Every YAML key besides `name`, `path`, `as` and
    `config_name` is a keyword of compute(). Each number of its result becomes `<as>.<key>`
    (`as` defaults to the module folder's name; nested keys joined with '.'); a list with one
    number per text becomes one metric, its mean, with a 95% bootstrap interval over prompts;
    other numbers have no interval. Texts are whole continuations (end-of-text dropped).
    The human row gets nothing from a module that needs references (it would compare the human
    text with itself); a module without references scores the human texts too.
    Before generation starts, the module is loaded and run on ten fixed sentences: a module that
    cannot be loaded, fails, needs an unreachable Hub or returns no numbers stops the run.
    """

    path: str = ""
    alias: str = ""
    config_name: str | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()

    needs_human = True
    extra_options = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise UserError("path: required: a local evaluate module folder or a Hugging Face Hub id "
                            f"(got {self.path!r})")
        alias = self.alias or Path(self.path.rstrip("/")).stem
        if not isinstance(alias, str) or not alias or any(c in alias for c in " \t\n/"):
            raise UserError(f"as: must be a name without spaces or slashes (got {self.alias!r})")
        object.__setattr__(self, "alias", alias)
        if self.config_name is not None and not isinstance(self.config_name, str):
            raise UserError(f"config_name: must be a string (got {self.config_name!r})")

    @classmethod
    def options(cls) -> list[str]:
        return ["path", "as", "config_name", "(any keyword of the module's compute)"]

    @classmethod
    def from_options(cls, options: dict) -> "EvaluateMetric":
        rest = {k: v for k, v in options.items() if k not in ("path", "as", "config_name")}
        return cls(path=options.get("path", ""), alias=options.get("as", ""),
                   config_name=options.get("config_name"), kwargs=tuple(sorted(rest.items())))

    @property
    def key(self) -> str:
        return f"evaluate:{self.alias}"

    def module(self):
        return load_module(self.path, self.config_name, f"scorers (evaluate {self.alias}).path")

    def compute(self, predictions: Sequence[str], references: Sequence[str]) -> Any:
        module = self.module()
        inputs = {"predictions": list(predictions)}
        if needs_references(module):
            inputs["references"] = list(references)
        return module.compute(**inputs, **dict(self.kwargs))

    def preflight(self) -> None:
        """Load the module and run it on PROBE_TEXTS: fail now, not after generation."""
        references = PROBE_TEXTS[1:] + PROBE_TEXTS[:1]
        try:
            result = self.compute(PROBE_TEXTS, references)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"scorers (evaluate {self.alias}): module {self.path!r} failed on a test input "
                            f"(offline and it needs the Hub? wrong keyword?): {first_line(exc)}") from None
        scalars, per_text = numeric_outputs(result, self.alias, len(PROBE_TEXTS))
        if not scalars and not per_text:
            raise UserError(f"scorers (evaluate {self.alias}): module {self.path!r} returned no numbers "
                            f"(got {repr(result)[:200]})")

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if not generations or (generations[0].run == HUMAN_RUN and needs_references(self.module())):
            return ScoreResult(values={})
        result = self.compute([g.text for g in generations], [h.text for h in ctx.human])
        scalars, per_text = numeric_outputs(result, self.alias, len(generations))

        def statistic(idx: np.ndarray) -> dict[str, float]:
            return {name: float(np.mean(values[idx])) for name, values in per_text.items()}

        values = {**scalars, **statistic(np.arange(len(generations)))}
        ci = bootstrap_ci(statistic, len(generations), ctx.resamples, ctx.seed) if per_text else {}
        return ScoreResult(values=values, ci=ci, per_sample={k: tuple(v) for k, v in per_text.items()})
