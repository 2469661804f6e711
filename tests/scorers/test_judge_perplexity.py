"""judge_perplexity against an independent recomputation with transformers, and against the
generator's own `perplexity` when the judge is the generator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.records import Generation
from evalharness.scorers.judge_perplexity import JudgePerplexity
from helpers import write_experiment
from scorer_helpers import ctx

CONTEXTS = ["The river city was built during the war.", "Her song", "North of the old church school",
            "A king wrote", "The first season", "Many ships sailed"]
TEXTS = [" Later the bridge was long and high.", " played in the film", ", the road ran south.",
         " a new album for his team", "", " of the game was played by most of the team in the city."]


def records(run: str = "r") -> list[Generation]:
    """Text-only generations (the judge reads text): the second and the fifth end with end-of-text."""
    return [Generation(prompt_id=f"{i:05d}", run=run, text=t, token_ids=(), num_tokens=0,
                       stopped_by_eos=i in (1, 4), logprobs_model=(), logprobs_sampler=())
            for i, t in enumerate(TEXTS)]


def reference_nll(model_dir, context: str, text: str, ended: bool) -> tuple[float, int]:
    """One text alone, no padding, straight from transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    continuation = tokenizer(text, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if ended else [])
    ids = torch.tensor([context_ids + continuation])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    nll = -sum(float(logp[len(context_ids) + t - 1, tok]) for t, tok in enumerate(continuation))
    return nll, len(continuation)


def test_equals_an_independent_transformers_recomputation(tiny_model_dir):
    gens = records()
    human = [Generation(prompt_id=g.prompt_id, run="human", text="", token_ids=(), num_tokens=0,
                        stopped_by_eos=False, logprobs_model=(), logprobs_sampler=()) for g in gens]
    result = JudgePerplexity(model=str(tiny_model_dir), batch_size=4).score(
        gens, ctx(human=human, context_texts=CONTEXTS, resamples=50))
    parts = [reference_nll(tiny_model_dir, c, g.text, g.stopped_by_eos) for c, g in zip(CONTEXTS, gens)]
    pooled = math.exp(sum(n for n, _ in parts) / sum(k for _, k in parts))
    assert result.values["judge_perplexity"] == pytest.approx(pooled, rel=1e-6)
    for value, (nll, k) in zip(result.per_sample["judge_perplexity"], parts):
        assert value == pytest.approx(math.exp(nll / k), rel=1e-6)
    low, high = result.ci["judge_perplexity"]
    assert low <= result.values["judge_perplexity"] <= high


def test_bad_options_name_the_key():
    with pytest.raises(UserError, match="^model:"):
        JudgePerplexity()
    with pytest.raises(UserError, match="^dtype:"):
        JudgePerplexity(model="builtin:pydocs-gpt2-small", dtype="int8")
    with pytest.raises(UserError, match="^max_tokens:"):
        JudgePerplexity(model="builtin:pydocs-gpt2-small", max_tokens=1)


def test_judge_equal_to_generator_reproduces_perplexity(tmp_path, tiny_model_dir, corpus_jsonl):
    """Through the pipeline: wherever the judge's tokenisation of the texts gives back the
    generator's ids, each text's judge perplexity is its perplexity under the generator."""
    from transformers import AutoTokenizer

    from evalharness.cli import main

    yaml = write_experiment(tmp_path / "e.yaml", tiny_model_dir, corpus_jsonl, "[pure, {name: top_k, k: 4}]",
                            scorers=f"[perplexity, {{name: judge_perplexity, model: {tiny_model_dir}}}]")
    assert main(["run", str(yaml), "--output", str(tmp_path / "out")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = {p["prompt_id"]: p for p in map(json.loads, (tmp_path / "out" / "prompts.jsonl").open())}
    compared = 0
    for run in ("human", "pure", "top_k-k=4"):
        scores = json.loads((tmp_path / "out" / run / "scores.json").read_text())
        per_text = dict(zip(scores["per_sample"]["prompt_ids"], scores["per_sample"]["judge_perplexity"]))
        agreed = 0
        for line in (tmp_path / "out" / run / "generations.jsonl").open():
            g = json.loads(line)
            content = g["token_ids"][:-1] if g["stopped_by_eos"] else g["token_ids"]
            context = prompts[g["prompt_id"]]
            if (tokenizer(g["text"])["input_ids"] != content
                    or tokenizer(context["context_text"])["input_ids"] != context["context_ids"]):
                continue
            nll = -float(np.sum(g["logprobs_model"]))
            assert per_text[g["prompt_id"]] == pytest.approx(math.exp(nll / g["num_tokens"]), rel=1e-5)
            agreed += 1
        if agreed == len(per_text):  # every text agreed: the pooled values are equal too
            assert scores["metrics"]["judge_perplexity"] == pytest.approx(scores["metrics"]["perplexity"], rel=1e-5)
        compared += agreed
    assert compared >= 6


def test_a_served_judge_is_refused():
    with pytest.raises(UserError, match="^model: judge_perplexity needs the judge's weights"):
        JudgePerplexity(model="openai-compatible:http://127.0.0.1:8000/v1#m")
