"""Big-model placement (model.device_map): a model split by accelerate - here one layer kept on
disk and loaded on the fly by accelerate's hooks - gives the tokens and log-probabilities of the
model in one piece, through the whole pipeline and the oracle."""

import json
from pathlib import Path

import pytest
import yaml

from evalharness.experiment import config
from evalharness.errors import UserError
from evalharness.generation.models import load_model
from evalharness.oracle.plan import OracleSettings
from evalharness.oracle.run import run_oracle
from evalharness.experiment.pipeline import RunOptions, run_experiment
from helpers import write_experiment

SAMPLERS = "[greedy, pure, {name: top_p, p: 0.9}, {name: beam, num_beams: 2}, {name: contrastive, alpha: 0.6, k: 3}]"
SPLIT = ("{transformer.wte: cpu, transformer.wpe: cpu, transformer.drop: cpu, transformer.h.0: cpu, "
         "transformer.h.1: disk, transformer.ln_f: cpu, lm_head: cpu}")


def experiment(tmp_path: Path, model: Path, corpus: Path, placement: str = "") -> config.ExperimentConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    yaml_path = write_experiment(tmp_path / "tiny.yaml", model, corpus, SAMPLERS,
                                 scorers="[perplexity, repetition]", num_prompts=8)
    text = yaml_path.read_text()
    if placement:
        text = text.replace("batch_size: 4}", f"batch_size: 4, {placement}}}")
    yaml_path.write_text(text)
    return config.load(yaml_path)


def test_a_split_model_is_really_split(tiny_model_dir, tmp_path):
    loaded = load_model(str(tiny_model_dir), "cpu", device_map=yaml.safe_load(SPLIT),
                        offload_folder=str(tmp_path / "offload"))
    assert loaded.model.hf_device_map["transformer.h.1"] == "disk"
    assert loaded.device == "cpu"


def test_device_map_runs_equal_single_device_runs(tiny_model_dir, corpus_jsonl, tmp_path):
    whole = run_experiment(experiment(tmp_path / "a", tiny_model_dir, corpus_jsonl),
                           RunOptions(output=tmp_path / "whole"))
    split = run_experiment(experiment(tmp_path / "b", tiny_model_dir, corpus_jsonl,
                                      f"device_map: {SPLIT}, offload_folder: {tmp_path / 'offload'}"),
                           RunOptions(output=tmp_path / "split"))
    files = sorted(p.relative_to(whole) for p in whole.glob("*/generations.jsonl"))
    assert len(files) == 6
    for name in files:
        assert (split / name).read_bytes() == (whole / name).read_bytes(), name
    assert (split / "summary.json").read_bytes() == (whole / "summary.json").read_bytes()


def test_the_oracle_runs_on_a_split_model(tiny_model_dir, corpus_jsonl, tmp_path):
    settings = OracleSettings(context_tokens=6, mode="window", num_tokens=300, batch_size=32, device="cpu")
    whole = run_oracle(experiment(tmp_path / "a", tiny_model_dir, corpus_jsonl), settings, tmp_path / "o1")
    split = run_oracle(experiment(tmp_path / "b", tiny_model_dir, corpus_jsonl,
                                  f"device_map: {SPLIT}, offload_folder: {tmp_path / 'offload'}"),
                       settings, tmp_path / "o2")
    assert (tmp_path / "o1" / "oracle_tokens.jsonl").read_bytes() == (tmp_path / "o2" / "oracle_tokens.jsonl").read_bytes()
    assert json.dumps(whole["k"]) == json.dumps(split["k"]) and whole["count"] == split["count"] == 300


@pytest.mark.parametrize("placement, message", [
    ("device_map: everywhere", "model.device_map: must be one of auto, balanced, balanced_low_0, sequential"),
    ("device_map: {lm_head: gpu}", "model.device_map.lm_head: must be a GPU index, cpu, disk or cuda:N"),
    ("device_map: {}", "model.device_map: must be a non-empty mapping"),
    ("max_memory: {0: 20GiB}", "model.max_memory: must be used together with model.device_map"),
    ("device_map: auto, max_memory: {disk: 20GiB}", "model.max_memory: must be keyed by GPU index, cpu or mps"),
    ("device_map: auto, max_memory: {cpu: [1]}", "model.max_memory.cpu: must be a size such as 20GiB"),
    ("offload_folder: /tmp/offload", "model.offload_folder: must be used together with model.device_map"),
])
def test_placement_mistakes_name_the_key(tmp_path, tiny_model_dir, corpus_jsonl, placement, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        experiment(tmp_path, tiny_model_dir, corpus_jsonl, placement)
