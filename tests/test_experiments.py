"""The shipped experiment YAMLs load and expand (the Hub ones cannot run here)."""

from pathlib import Path

import pytest

from evalharness.experiment import config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TABLE_1 = {"greedy", "beam-num_beams=16", "stochastic_beam-num_beams=16-prefer_finished=True", "pure",
           "temperature-temperature=0.9",
           "top_k-k=40", "top_k-k=640", "top_k-k=40-temperature=0.7", "top_p-p=0.95"}
HUSE_ROWS = {"top_k-k=40-interpolation=0.1-interpolate_with=untempered",
             "top_k-k=640-interpolation=0.1-interpolate_with=untempered",
             "top_k-k=40-temperature=0.7-interpolation=0.1-interpolate_with=untempered",
             "top_p-p=0.95-interpolation=0.1"}  # gen.py: top-k mixed with the untempered distribution


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_loads(path):
    cfg = config.load(path)
    assert cfg.samplers and cfg.scorers


def test_holtzman2019_is_table_1():
    cfg = config.load(EXPERIMENTS / "holtzman2019.yaml")
    assert {r.name for r in cfg.samplers} == TABLE_1 | HUSE_ROWS
    assert cfg.model.name == "gpt2-large" and cfg.data.num_prompts == 5000 and cfg.data.max_new_tokens == 200
    assert cfg.data.context_tokens == "first_paragraph"
    scorers = {s.name: dict(s.options) for s in cfg.scorers}
    assert scorers["mauve"]["featurizer"] == "gpt2-large" and scorers["self_bleu"]["max_hypotheses"] == 1000
    assert "huse" in scorers
    assert scorers["self_bleu"]["keep_eos"] is True and scorers["zipf"]["keep_eos"] is True  # gen.py's tokens


def test_wikitext_gpt2_reads_wikitext_lines():
    cfg = config.load(EXPERIMENTS / "wikitext_gpt2.yaml")
    assert cfg.data.source == "hf:wikitext/wikitext-103-raw-v1" and cfg.data.layout == "lines"
