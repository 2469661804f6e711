"""The Python API (README, section "Python API"): what `evalharness run` does, from a program.

    import evalharness
    root = evalharness.run("experiments/topk_vs_topp.yaml", limit=20, overrides=["model.device=cpu"])
    for row in evalharness.read_summary(root):
        print(row["run"], row["mauve"]["value"], row["mauve"]["ci"])

Errors the user can fix raise evalharness.UserError (the CLI prints their message and exits 2);
exit codes and printing stay the CLI's business. `evalharness/__init__` exposes these names
lazily, so that `import evalharness` does not import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from evalharness.errors import UserError
from evalharness.experiment import config as config_module
from evalharness.experiment.config import ExperimentConfig
from evalharness.experiment.parallel import World
from evalharness.experiment.pipeline import RunOptions, run_experiment
from evalharness.generation.allocator import keep_freed_memory
from evalharness.report.folder import load_results
from evalharness.samplers import SAMPLERS  # noqa: F401  (the registries plugins register into)
from evalharness.scorers import SCORERS  # noqa: F401

__all__ = ["run", "load_config", "read_summary", "SAMPLERS", "SCORERS", "UserError", "ExperimentConfig"]


def load_config(config: str | Path | Mapping[str, Any], overrides: Sequence[str] | None = None) -> ExperimentConfig:
    """A validated experiment: from a YAML file, or from a mapping shaped like one; `overrides`
    are "dotted.key=value" strings, as `run --set` takes them (values parsed as YAML)."""
    overrides = tuple(_override_list(overrides))
    if isinstance(config, Mapping):
        return config_module.parse(config_module.apply_overrides(dict(config), overrides), "", overrides)
    if isinstance(config, (str, Path)):
        return config_module.load(config, overrides)
    raise UserError(f"config: a YAML path or a mapping (got {type(config).__name__})")


def run(config: str | Path | Mapping[str, Any] | ExperimentConfig, *, limit: int | None = None,
        device: str | None = None, batch_size: int | None = None, output: str | Path | None = None,
        overwrite: bool = False, overrides: Sequence[str] | None = None) -> Path:
    """Run an experiment end to end (resumable, like `evalharness run`) and return its results
    folder. `config`: a YAML path, a mapping, or a loaded config (from load_config); the other
    arguments are the CLI's options. One process; several GPUs: use torchrun and the CLI."""
    if isinstance(config, ExperimentConfig):
        if overrides:
            raise UserError("overrides: give them to load_config (or pass the YAML path here); "
                            "a loaded config is already validated")
        cfg = config
    else:
        cfg = load_config(config, overrides)
    _check_positive(limit, "limit")
    _check_positive(batch_size, "batch_size")
    keep_freed_memory()
    opts = RunOptions(limit=limit, device=device, batch_size=batch_size,
                      output=Path(output) if output is not None else None, overwrite=overwrite)
    return run_experiment(cfg, opts, World())


def read_summary(results_dir: str | Path) -> list[dict]:
    """One dict per run of a results folder (human first, then the grid's order):
    {"run", "sampler", "params", and per metric {"value": v, "ci": (low, high) or None}}.
    Infinite values (e.g. a sampler's perplexity of human text) are float("inf")."""
    rows = load_results(Path(results_dir), with_generations=False).rows
    out = []
    for row in rows:
        entry: dict[str, Any] = {"run": row["run"], "sampler": row["sampler"], "params": dict(row["params"])}
        for metric, value in row["metrics"].items():
            ci = row["ci"].get(metric)
            entry[metric] = {"value": value, "ci": tuple(ci) if ci is not None else None}
        out.append(entry)
    return out


def _override_list(overrides: Sequence[str] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise UserError("overrides: a list of 'dotted.key=value' strings, e.g. ['data.num_prompts=100']")
    return list(overrides)


def _check_positive(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"{name}: must be an integer >= 1 (got {value!r})")
