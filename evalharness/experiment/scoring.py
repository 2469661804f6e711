"""score(runs, human): every scorer over every run and the human continuations, cached per run."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

import evalharness
from evalharness.experiment.config import ExperimentConfig
from evalharness.errors import UserError
from evalharness.experiment import faults
from evalharness.scorers.featurize import feature_cache_path, save_features
from evalharness.experiment.parallel import World, for_each_share
from evalharness.records import HUMAN_RUN, Generation, Prompt
from evalharness.scorers import ScoringContext
from evalharness.scorers.base import library_versions
from evalharness.store import ResultsDir, finite_or_named, fingerprint, read_json, write_json


def aligned(store: ResultsDir, run: str, prompts: list[Prompt]) -> list[Generation]:
    """The run's generations in prompt order; every prompt must have one."""
    by_id = store.read_generations(run)
    missing = [p.prompt_id for p in prompts if p.prompt_id not in by_id]
    if missing:
        raise UserError(f"{store.run_dir(run)}: {len(missing)} prompts have no generation "
                        f"(first: {missing[0]}); run the experiment again to complete it")
    return [by_id[p.prompt_id] for p in prompts]


def score_experiment(store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt], device: str) -> list[dict]:
    """Summary rows, human first: {run, sampler, params, metrics, ci, draws} (draws: the bootstrap
    resamples' values, for the paired comparisons of report.paired)."""
    runs = [(HUMAN_RUN, HUMAN_RUN, {})] + [(s.name, s.sampler, s.params_dict) for s in cfg.samplers]
    ctx = scoring_context(store, cfg, prompts, device)
    human = list(ctx.human)
    scorers = [spec.build() for spec in cfg.scorers]
    rows = []
    for run, sampler, params in tqdm(runs, desc="scoring", unit="run", disable=None):
        gens = human if run == HUMAN_RUN else aligned(store, run, prompts)
        scores = cached_scores(store, run, gens, scorers, ctx, cfg)
        rows.append({"run": run, "sampler": sampler, "params": params,
                     "metrics": scores["metrics"], "ci": scores["ci"], "draws": scores.get("draws", {})})
    return rows


def scoring_context(store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt], device: str) -> ScoringContext:
    """What every scorer may use besides a run's generations (the human row among it)."""
    return ScoringContext(human=aligned(store, HUMAN_RUN, prompts), resamples=cfg.bootstrap.resamples,
                          seed=cfg.seed if cfg.bootstrap.seed is None else cfg.bootstrap.seed,
                          cache_dir=store.root / "cache", model_name=cfg.model.name, device=device,
                          results_dir=store.root, runs=(HUMAN_RUN, *(s.name for s in cfg.samplers)),
                          contexts=[p.context_ids for p in prompts],
                          context_texts=[p.context_text for p in prompts])


def cached_scores(store: ResultsDir, run: str, gens: list[Generation], scorers, ctx: ScoringContext,
                  cfg: ExperimentConfig) -> dict:
    """Scores are recomputed only when what determines them changed (run settings, prompts,
    scorer options, bootstrap, evalharness version, the versions of the libraries the scorers
    compute with: Scorer.libraries)."""
    key = fingerprint({
        "run": read_json(store.run_dir(run) / "run.json")["fingerprint"],
        "human": read_json(store.run_dir(HUMAN_RUN) / "run.json")["fingerprint"],
        "prompts": [g.prompt_id for g in gens], "scorers": [asdict(s) for s in cfg.scorers],
        "bootstrap": asdict(cfg.bootstrap), "version": evalharness.__version__,
        "libraries": library_versions(name for scorer in scorers for name in scorer.libraries),
        "inputs": [scorer.inputs_fingerprint(ctx) for scorer in scorers],
    })
    path = store.run_dir(run) / "scores.json"
    if path.exists():
        cached = read_json(path)
        if cached.get("key") == key and "draws" in cached:  # scores from before paired comparisons: redo
            for part in ("metrics", "ci", "draws"):
                cached[part] = {k: finite_or_named(v) for k, v in cached.get(part, {}).items()}
            return cached
    metrics, ci, per_sample, draws = {}, {}, {}, {}
    for scorer in scorers:
        result = scorer.score(gens, ctx)
        metrics.update(result.values)
        ci.update({k: list(v) for k, v in result.ci.items()})
        per_sample.update({k: list(v) for k, v in result.per_sample.items()})
        draws.update({k: list(v) for k, v in result.draws.items()})
    scores = {"key": key, "run": run, "metrics": metrics, "ci": ci, "draws": draws,
              "per_sample": {"prompt_ids": [g.prompt_id for g in gens], **per_sample}}
    write_json(path, scores)
    faults.reached("scores")  # a no-op outside crash tests
    return scores


def share_featurisation(world: World, store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt],
                        device: str) -> None:
    """Under torchrun, the text features that scorers need (MAUVE's) are computed by all ranks
    before rank 0 scores: the featuriser's fixed batches are shared out as generation batches
    are, and rank 0 writes each run's features to the cache where the scorer then finds them,
    equal to the bytes one process computes. A world of one leaves it to the scorers."""
    if not world.distributed:
        return
    for spec in cfg.scorers:
        scorer = spec.build()
        if not hasattr(scorer, "load_featurizer"):
            continue
        featurizer = world.everywhere(lambda: scorer.load_featurizer(cfg.model.name, device))
        for run, texts in world.on_main(lambda: missing_features(store, cfg, prompts, featurizer)):
            encoded, chunks = featurizer.plan(texts)
            parts: list[np.ndarray] = []
            for_each_share(world, chunks, lambda chunk: featurizer.forward(encoded, chunk),
                           lambda chunk, rows: parts.append(rows))
            if world.is_main:
                path = feature_cache_path(featurizer, texts, store.root / "cache", run)
                save_features(path, featurizer.assemble(len(texts), chunks, parts))


def missing_features(store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt], featurizer) -> list[tuple[str, list[str]]]:
    """(run, texts in prompt order) for every run whose features are not cached yet."""
    out = []
    for run in [HUMAN_RUN] + [s.name for s in cfg.samplers]:
        texts = [g.text for g in aligned(store, run, prompts)]
        if not feature_cache_path(featurizer, texts, store.root / "cache", run).is_file():
            out.append((run, texts))
    return out


def share_judging(world: World, store: ResultsDir, cfg: ExperimentConfig, prompts: list[Prompt], device: str) -> None:
    """Under torchrun, the judge scorers' forward passes (judge_perplexity, judge_typicality) are
    shared as the featurisers' are: for every run whose values are not cached, rank 0 lists the
    judge's inputs and their fixed batches, every rank computes its share of the batches on its
    own copy of the judge, and rank 0 writes the run's cache file, where the scorer then finds
    it. A world of one leaves it to the scorers."""
    if not world.distributed:
        return
    judges = [scorer for scorer in (spec.build() for spec in cfg.scorers) if hasattr(scorer, "pending")]
    if not judges:
        return
    ctx = world.everywhere(lambda: scoring_context(store, cfg, prompts, device))
    for scorer in judges:
        for run in ctx.runs:
            work = world.on_main(lambda: scorer.pending(
                list(ctx.human) if run == HUMAN_RUN else aligned(store, run, prompts), ctx))
            if work is None:
                continue
            parts: list[np.ndarray] = []
            for_each_share(world, list(work.batches), lambda batch: scorer.compute(work, batch, ctx),
                           lambda batch, rows: parts.append(rows))
            if world.is_main:
                scorer.finish(work, parts)
