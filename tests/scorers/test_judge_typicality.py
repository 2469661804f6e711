"""judge_typicality: rating-token probabilities against a direct computation, a judge made to
answer 5, agreement with people against scipy on the written files, huse_judge against huse."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.records import TYPICALITY_INSTRUCTIONS, Generation
from evalharness.scorers import judgements as judgements_file
from evalharness.scorers.huse import Huse
from evalharness.scorers.judge_typicality import JudgeTypicality, scale_text
from helpers import build_tiny_model, write_experiment
from scorer_helpers import ctx

TEXTS = ["The river city was built during the war.", "Her song", "", "North of the old church school the road "
         "ran south for many miles, and the king wrote a song about it."]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A tiny GPT-2 with room for the filled prompt (its small vocabulary makes it ~600 tokens)."""
    return build_tiny_model(tmp_path_factory.mktemp("judge"), n_positions=1024)


def texts_as(run: str, texts) -> list[Generation]:
    return [Generation(prompt_id=f"{i:05d}", run=run, text=t, token_ids=(), num_tokens=0,
                       stopped_by_eos=False, logprobs_model=(), logprobs_sampler=()) for i, t in enumerate(texts)]


def reference_expected(model_dir, text: str) -> float:
    """The next-token distribution after the filled default prompt, from transformers directly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = (f"{TYPICALITY_INSTRUCTIONS}\n\nThe scale:\n{scale_text()}\n\nText:\n{text}\n\n"
              "How typical is this text? Answer with one number from 1 to 6.\nRating:")
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1].double()
    p = torch.softmax(logits, -1)
    per_rating = []
    for r in range(1, 7):
        spellings = {tuple(tokenizer.encode(s)) for s in (str(r), f" {r}")}
        per_rating.append(sum(float(p[s[0]]) for s in spellings if len(s) == 1))
    return float(np.dot(np.arange(1, 7), per_rating) / sum(per_rating))


def test_expected_rating_equals_a_direct_computation(judge_dir):
    result = JudgeTypicality(model=str(judge_dir), batch_size=3).score(texts_as("r", TEXTS), ctx(resamples=20))
    reference = [reference_expected(judge_dir, t) for t in TEXTS]
    assert result.per_sample["judge_typicality"] == pytest.approx(reference, abs=1e-6)
    assert result.values["judge_typicality"] == pytest.approx(np.mean(reference), abs=1e-6)
    assert 1 <= result.values["judge_typicality_argmax"] <= 6


def test_a_judge_whose_output_layer_says_5_rates_5(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path / "five", n_positions=1024)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    five = tokenizer.encode("5")[0]
    direction = torch.nn.functional.normalize(torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0)), dim=0)
    with torch.no_grad():  # every position's final state = `direction`; the (tied) output row of "5" points along it
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.transformer.wte.weight[five] = 20 * direction
    model.save_pretrained(folder)
    result = JudgeTypicality(model=str(folder)).score(texts_as("r", TEXTS), ctx())
    assert result.values["judge_typicality"] == pytest.approx(5.0, abs=1e-3)
    assert result.values["judge_typicality_argmax"] == 5.0


def test_bad_options_name_the_key():
    with pytest.raises(UserError, match="^template:"):
        JudgeTypicality(model="builtin:pydocs-gpt2-small", template="no text field")
    with pytest.raises(UserError, match="^template:"):
        JudgeTypicality(model="builtin:pydocs-gpt2-small", template="{text} {unknown}")
    with pytest.raises(UserError, match="^model:"):
        JudgeTypicality()


def read_jsonl(path):
    return [json.loads(line) for line in path.open()]


def write_judgements(root, runs, prompt_ids, seed: int = 0):
    """Two annotators rate every text of every run (seeded ratings)."""
    rng = random.Random(seed)
    with open(root / "judgements.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "prompt_id", "annotator", "typicality"])
        for run in runs:
            for pid in prompt_ids:
                for annotator in ("a", "b"):
                    writer.writerow([run, pid, annotator, rng.randint(1, 6)])


def test_agreement_and_huse_judge_from_the_written_files(tmp_path, tiny_model_dir, judge_dir, corpus_jsonl,
                                                       monkeypatch):
    from scipy.stats import kendalltau, spearmanr

    from evalharness.cli import main

    scorers = f"[huse, {{name: judge_typicality, model: {judge_dir}}}]"
    yaml = write_experiment(tmp_path / "e.yaml", tiny_model_dir, corpus_jsonl, "[pure]", scorers=scorers,
                            num_prompts=12)
    out = tmp_path / "out"
    assert main(["run", str(yaml), "--output", str(out)]) == 2  # huse: no judgements yet; generations kept
    prompt_ids = [json.loads(line)["prompt_id"] for line in (out / "prompts.jsonl").open()]
    write_judgements(out, ["human", "pure"], prompt_ids)
    assert main(["run", str(yaml), "--output", str(out)]) == 0
    people = judgements_file.load(out / "judgements.csv", ("human", "pure"), tuple(prompt_ids))
    judged = {run: {r["prompt_id"]: r["expected"] for r in read_jsonl(out / run / "judge_typicality.jsonl")}
              for run in ("human", "pure")}
    pairs = [(judged[run][pid], people.mean_typicality(run)[pid]) for run in ("human", "pure") for pid in sorted(prompt_ids)]
    x, y = np.array(pairs).T
    human_scores = json.loads((out / "human" / "scores.json").read_text())["metrics"]
    assert human_scores["judge_agreement_spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert human_scores["judge_agreement_kendall"] == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)

    # huse_judge = huse fed the judge's ratings as its judgements
    as_judgements = judgements_file.Judgements(out / "judge.csv", {(run, pid): (rating,) for run in judged
                                                                   for pid, rating in judged[run].items()})
    monkeypatch.setattr(judgements_file, "load", lambda *args: as_judgements)
    from evalharness.scorers.base import ScoringContext
    from evalharness.store import ResultsDir

    store = ResultsDir(out)
    human = [store.read_generations("human")[pid] for pid in prompt_ids]
    run = [store.read_generations("pure")[pid] for pid in prompt_ids]
    context = ScoringContext(human=human, resamples=20, seed=0, results_dir=out, runs=("human", "pure"))
    expected = Huse().score(run, context)
    pure = json.loads((out / "pure" / "scores.json").read_text())
    assert expected.values  # HUSE is defined on these 24 items
    for name in ("huse", "huse_q", "huse_d"):
        assert pure["metrics"][name.replace("huse", "huse_judge")] == pytest.approx(expected.values[name], abs=1e-12)
        assert pure["ci"][name.replace("huse", "huse_judge")] == pytest.approx(list(expected.ci[name]), abs=1e-12)
    assert pure["metrics"]["people_typicality"] == pytest.approx(np.mean(list(people.mean_typicality("pure").values())))


def test_people_and_judge_read_one_wording(judge_dir):
    """The rating page, the MTurk template and the judge's prompt take the instructions from
    evalharness.records, the one place they are written."""
    import html

    from evalharness.annotation import app, crowd
    from evalharness.scorers.judge_typicality import DEFAULT_TEMPLATE, prompt_ids
    from transformers import AutoTokenizer

    page = app.static_file("annotate.html").decode()
    assert html.escape(TYPICALITY_INSTRUCTIONS) in page and "<!--instructions-->" not in page
    assert "{instructions}" in crowd.TEMPLATE and "Each text below" not in crowd.TEMPLATE
    tokenizer = AutoTokenizer.from_pretrained(judge_dir)
    assert TYPICALITY_INSTRUCTIONS in tokenizer.decode(prompt_ids(tokenizer, DEFAULT_TEMPLATE, "x", ""))
