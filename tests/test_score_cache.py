"""The score cache key: scores are recomputed when a library the scorers compute with changes."""

import importlib.metadata
from types import SimpleNamespace

import pytest

from evalharness.experiment import scoring
from evalharness.experiment.config import BootstrapConfig, ScorerSpec
from evalharness.records import HUMAN_RUN, Generation
from evalharness.scorers import SCORERS, ScoringContext
from evalharness.scorers.base import SCORING_LIBRARIES, library_versions
from evalharness.store import ResultsDir, write_json


@pytest.fixture
def folder(tmp_path):
    """A results folder with a human run and one model run (their run.json fingerprints)."""
    store = ResultsDir(tmp_path)
    for run in (HUMAN_RUN, "pure"):
        store.run_dir(run).mkdir(parents=True)
        write_json(store.run_dir(run) / "run.json", {"fingerprint": f"fp-{run}"})
    return store


def generation(i, ids):
    return Generation(prompt_id=f"{i:05d}", run="pure", text=" ".join(map(str, ids)), token_ids=tuple(ids),
                      num_tokens=len(ids), stopped_by_eos=False, logprobs_model=(-1.0,) * len(ids),
                      logprobs_sampler=(-1.0,) * len(ids))


def score(store, names=("zipf", "self_bleu")):
    cfg = SimpleNamespace(scorers=tuple(ScorerSpec(n) for n in names), bootstrap=BootstrapConfig(resamples=0))
    generations = [generation(i, ids) for i, ids in enumerate([[1, 2, 3, 1, 2], [4, 1, 2, 2], [3, 3, 1, 5]])]
    ctx = ScoringContext(human=generations, resamples=0)
    return scoring.cached_scores(store, "pure", generations, [spec.build() for spec in cfg.scorers], ctx, cfg)


def test_a_new_version_of_a_library_a_scorer_uses_recomputes_its_scores(folder, monkeypatch):
    first = score(folder)
    assert score(folder)["key"] == first["key"]  # nothing changed: the cached scores
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "scipy" else real(name))
    assert score(folder)["key"] != first["key"]  # zipf's fit is scipy's


def test_a_library_no_listed_scorer_uses_leaves_the_cache_alone(folder, monkeypatch):
    first = score(folder, ("self_bleu",))
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "scipy" else real(name))
    assert score(folder, ("self_bleu",))["key"] == first["key"]


def test_every_scorer_declares_installed_libraries_and_by_default_all_of_them():
    for name in SCORERS.names():
        assert set(SCORERS.get(name).libraries) <= set(SCORING_LIBRARIES), name
    assert SCORERS.get("mauve").libraries == SCORING_LIBRARIES  # not narrowed: every one counts
    versions = library_versions(SCORING_LIBRARIES)
    assert versions["numpy"] and versions["scipy"] and versions["scikit-learn"] and versions["mauve-text"]
    assert versions["faiss-cpu"] or versions["faiss-gpu"]
