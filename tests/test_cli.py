"""The real CLI end to end on a tiny model: files, resume without regeneration, user errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = "[greedy, pure, {name: top_p, p: 0.9}, {name: beam, num_beams: 2}, {name: contrastive, alpha: 0.6, k: 3}]"
SCORERS = "[perplexity, repetition, self_bleu, zipf, distinct]"


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def experiment(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    yaml_path = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl, SAMPLERS, scorers=SCORERS)
    out = folder / "results"
    first = cli("run", yaml_path, "--output", out)
    return yaml_path, out, first


def test_run_writes_a_complete_results_folder(experiment):
    _, out, result = experiment
    assert result.returncode == 0, result.stderr
    runs = ["human", "greedy", "pure", "top_p-p=0.9", "beam-num_beams=2", "contrastive-alpha=0.6-k=3"]
    for run in runs:
        lines = (out / run / "generations.jsonl").read_text().splitlines()
        assert len(lines) == 6
        record = json.loads(lines[0])
        assert set(record) == {"prompt_id", "run", "text", "token_ids", "num_tokens", "stopped_by_eos",
                               "logprobs_model", "logprobs_sampler"}
        assert len(record["token_ids"]) == record["num_tokens"] == len(record["logprobs_model"])
    summary = json.loads((out / "summary.json").read_text())
    assert [row["run"] for row in summary] == runs
    for row in summary:
        assert set(row) == {"run", "sampler", "params", "metrics", "ci", "vs_best"}
        for metric in ("mean_length", "eos_rate", "perplexity", "repetition", "self_bleu", "zipf", "distinct_2"):
            assert metric in row["metrics"], metric
    assert summary[3]["params"] == {"p": 0.9, "temperature": 1.0, "interpolation": 0.0}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["finished"] and manifest["versions"]["torch"]
    assert (out / "summary.csv").read_text().startswith("run,sampler,params,")
    assert "| human |" in (out / "summary.md").read_text()
    assert len((out / "prompts.jsonl").read_text().splitlines()) == 6
    assert "results:" in result.stdout


def test_second_run_regenerates_and_rescores_nothing(experiment):
    yaml_path, out, _ = experiment
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jsonl")}
    before.update({p: p.stat().st_mtime_ns for p in out.rglob("scores.json")})
    again = cli("run", yaml_path, "--output", out)
    assert again.returncode == 0, again.stderr
    changed = [p for p, t in before.items() if p.name != "prompts.jsonl" and p.stat().st_mtime_ns != t]
    assert changed == []


def test_same_seed_twice_gives_byte_identical_generation_files(experiment, tmp_path):
    yaml_path, out, _ = experiment
    assert cli("run", yaml_path, "--output", tmp_path / "again").returncode == 0
    for path in out.glob("*/generations.jsonl"):
        assert path.read_bytes() == (tmp_path / "again" / path.parent.name / "generations.jsonl").read_bytes()


def test_limit_and_batch_size_override_give_the_same_generations(experiment, tmp_path):
    yaml_path, out, _ = experiment
    result = cli("run", yaml_path, "--output", tmp_path / "r", "--limit", 3, "--batch-size", 1)
    assert result.returncode == 0, result.stderr
    for run in ("pure", "top_p-p=0.9", "contrastive-alpha=0.6-k=3"):
        full = {g["prompt_id"]: g for g in map(json.loads, (out / run / "generations.jsonl").read_text().splitlines())}
        part = [json.loads(x) for x in (tmp_path / "r" / run / "generations.jsonl").read_text().splitlines()]
        assert len(part) == 3
        for g in part:  # same tokens; log-probs equal up to float32 rounding of a different batch shape
            assert g["token_ids"] == full[g["prompt_id"]]["token_ids"] and g["text"] == full[g["prompt_id"]]["text"]
            for key in ("logprobs_model", "logprobs_sampler"):  # the README's "about 1e-6": 2 float32 ulps
                assert max(abs(a - b) for a, b in zip(g[key], full[g["prompt_id"]][key])) <= 4e-6


def test_a_changed_seed_is_refused_and_never_mixed_with_old_generations(experiment, tmp_path):
    """(Every other setting: tests/test_refusals.py.)"""
    yaml_path, out, _ = experiment
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml_path.read_text().replace("seed: 0", "seed: 1"))
    result = cli("run", changed, "--output", out)
    assert result.returncode == 2
    assert "holds generations made with other settings (seed)" in result.stderr
    assert "--overwrite" in result.stderr


def test_list_shows_samplers_scorers_and_papers():
    result = cli("list")
    assert result.returncode == 0
    for word in ("top_p", "Holtzman", "contrastive", "Su et al.", "self_bleu", "mauve", "mirostat", "Basu et al.",
                 "top_n_sigma", "Tang et al.", "hf ", "transformers' names: top_p = p",
                 "transformers' names: penalty_alpha = alpha, top_k = k"):
        assert word in result.stdout


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t.replace("num_prompts: 6", "num_prompts: 600"), "qualify"),
    (lambda t: t.replace("max_new_tokens: 12", "max_new_tokens: 125"), "exceeds the model's maximum length of 128"),
    (lambda t: t.replace("docs.jsonl", "missing.jsonl"), "no such file"),
    (lambda t: t.replace("name: tiny", "name: tiny\nextra_key: 1"), "unknown key 'extra_key'"),
    (lambda t: t.replace("samplers: [greedy", "samplers: [greedyy"), "did you mean 'greedy'"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(experiment, tmp_path, mutate, message):
    yaml_path, _, _ = experiment
    bad = tmp_path / "bad.yaml"
    bad.write_text(mutate(yaml_path.read_text()))
    result = cli("run", bad, "--output", tmp_path / "out")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_hub_model_that_cannot_be_reached_is_a_user_error(experiment, tmp_path):
    yaml_path, _, _ = experiment
    bad = tmp_path / "hub.yaml"
    text = yaml_path.read_text()
    start = text.index("{name: ") + len("{name: ")
    bad.write_text(text[:start] + "someone/not-a-local-model" + text[text.index(",", start):])
    result = cli("run", bad, "--output", tmp_path / "out")
    # offline (HF_HUB_OFFLINE=1 here) or unreachable: either way one line naming the model
    assert result.returncode == 2 and "model.name:" in result.stderr and "'someone/not-a-local-model'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = cli("--debug", "run", tmp_path / "nope.yaml")
    assert result.returncode != 0 and "Traceback" in result.stderr
