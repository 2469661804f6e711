"""End to end: a real `run` on a tiny model -> `annotate` serving it -> simulated annotators
rating through the JSON API -> `annotate export` -> judgements.csv checked against the
contract the `huse` scorer reads (columns run,prompt_id,annotator,typicality; integers 1-6; one
row per annotator and text; every row naming the run and prompt whose text was rated)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter

import pytest

from annotation_helpers import Server
from evalharness.cli import main
from evalharness.store import ResultsDir
from helpers import write_experiment

PER_ITEM = 3


def rating(text: str, annotator: str) -> int:
    """A simulated annotator: a rating that is a function of the text it sees (blind rating:
    the run is not shown) and of who rates, spread over the whole scale."""
    return 1 + int(hashlib.sha256(f"{annotator}\0{text}".encode()).hexdigest(), 16) % 6


@pytest.fixture(scope="module")
def results(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotate-e2e")
    yaml = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[greedy, {name: top_p, p: 0.9}]",
                            num_prompts=5, max_new=10)
    assert main(["run", str(yaml), "--output", str(folder / "results")]) == 0
    return folder / "results"


def simulate(server: Server, names: list[str]) -> int:
    """Every annotator rates until no HIT is left; -> submissions made."""
    tokens = server.links()
    submissions = 0
    for _ in range(50):  # bounded: 6 HITs per annotator here
        active = False
        for name in names:
            hit = server.hit(tokens[name])
            if hit["hit_id"] is None:
                continue
            ratings = {item["item_id"]: rating(item["text"], name) for item in hit["items"]}
            assert server.submit(tokens[name], hit["hit_id"], ratings)[0] == 200
            submissions, active = submissions + 1, True
        if not active:
            return submissions
    raise AssertionError("the study did not finish")


def test_simulated_study_exports_the_huse_contract(results):
    server = Server(results, "--per-item", PER_ITEM, "--hit-size", 3, "--annotators", PER_ITEM)
    try:
        names = sorted(server.links())
        assert simulate(server, names) == PER_ITEM * 6  # 3 runs x 5 texts in groups of 3 and 2
    finally:
        server.stop()
    assert main(["annotate", "export", str(results)]) == 0
    with open(results / "judgements.csv", newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    assert header == ["run", "prompt_id", "annotator", "typicality"]
    store = ResultsDir(results)
    texts = {(run, pid): g.text for run in ("human", "greedy", "top_p-p=0.9")
             for pid, g in store.read_generations(run).items()}
    assert len(texts) == 15
    assert Counter((run, pid) for run, pid, _, _ in rows) == Counter(dict.fromkeys(texts, PER_ITEM))
    assert len({(run, pid, annotator) for run, pid, annotator, _ in rows}) == len(rows)
    assert {annotator for _, _, annotator, _ in rows} == set(names)
    for run, prompt_id, annotator, typicality in rows:
        assert typicality in {"1", "2", "3", "4", "5", "6"}
        assert int(typicality) == rating(texts[run, prompt_id], annotator)  # the row names the text rated
    assert len({typicality for *_, typicality in rows}) >= 4
