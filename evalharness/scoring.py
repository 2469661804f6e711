"""score(runs, human): every scorer over every run and the human continuations, cached per run."""

from __future__ import annotations

from dataclasses import asdict

from tqdm.auto import tqdm

import evalharness
from evalharness.config import ExperimentConfig
from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, Generation, Prompt
from evalharness.scorers import ScoringContext
from evalharness.store import ResultsDir, fingerprint, read_json, write_json


def aligned(store: ResultsDir, run: str, prompts: list[Prompt]) -> list[Generation]:
    """The run's generations in prompt order; every prompt must have one."""
    by_id = store.read_generations(run)
    missing = [p.prompt_id for p in prompts if p.prompt_id not in by_id]
    if missing:
        raise UserError(f"{store.run_dir(run)}: {len(missing)} prompts have no generation "
                        f"(first: {missing[0]}); run the experiment again to complete it")
    return [by_id[p.prompt_id] for p in prompts]


def score_experiment(store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt], device: str) -> list[dict]:
    """Summary rows, human first: {run, sampler, params, metrics, ci}."""
    human = aligned(store, HUMAN_RUN, prompts)
    ctx = ScoringContext(human=human, resamples=cfg.bootstrap.resamples,
                         seed=cfg.seed if cfg.bootstrap.seed is None else cfg.bootstrap.seed,
                         cache_dir=store.root / "cache", model_name=cfg.model.name, device=device,
                         contexts=[p.context_ids for p in prompts])
    scorers = [spec.build() for spec in cfg.scorers]
    runs = [(HUMAN_RUN, HUMAN_RUN, {})] + [(s.name, s.sampler, s.params_dict) for s in cfg.samplers]
    rows = []
    for run, sampler, params in tqdm(runs, desc="scoring", unit="run", disable=None):
        gens = human if run == HUMAN_RUN else aligned(store, run, prompts)
        scores = cached_scores(store, run, gens, scorers, ctx, cfg)
        rows.append({"run": run, "sampler": sampler, "params": params,
                     "metrics": scores["metrics"], "ci": scores["ci"]})
    return rows


def cached_scores(store: ResultsDir, run: str, gens: list[Generation], scorers, ctx: ScoringContext,
                  cfg: ExperimentConfig) -> dict:
    """Scores are recomputed only when what determines them changed (run settings, prompts,
    scorer options, bootstrap, evalharness version)."""
    key = fingerprint({
        "run": read_json(store.run_dir(run) / "run.json")["fingerprint"],
        "human": read_json(store.run_dir(HUMAN_RUN) / "run.json")["fingerprint"],
        "prompts": [g.prompt_id for g in gens], "scorers": [asdict(s) for s in cfg.scorers],
        "bootstrap": asdict(cfg.bootstrap), "version": evalharness.__version__,
    })
    path = store.run_dir(run) / "scores.json"
    if path.exists():
        cached = read_json(path)
        if cached.get("key") == key:
            return cached
    metrics, ci, per_sample = {}, {}, {}
    for scorer in scorers:
        result = scorer.score(gens, ctx)
        metrics.update(result.values)
        ci.update({k: list(v) for k, v in result.ci.items()})
        per_sample.update({k: list(v) for k, v in result.per_sample.items()})
    scores = {"key": key, "run": run, "metrics": metrics, "ci": ci,
              "per_sample": {"prompt_ids": [g.prompt_id for g in gens], **per_sample}}
    write_json(path, scores)
    return scores
