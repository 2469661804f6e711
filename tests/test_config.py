"""Experiment YAML validation: every mistake is one line that names the key to fix."""

import textwrap

import pytest

from evalharness.experiment import config
from evalharness.errors import UserError

BASE = """\
name: t
model: {name: gpt2}
data: {source: docs.jsonl}
samplers: [greedy]
"""


def load_text(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    return config.load(path)


def test_the_issue_example_expands_to_deterministic_run_names(tmp_path):
    cfg = load_text(tmp_path, BASE.replace("samplers: [greedy]", """\
samplers:
  - greedy
  - {name: beam, num_beams: [4, 16]}
  - {name: top_k, k: [40, 640]}
  - {name: top_k, k: 40, temperature: 0.7}
  - {name: top_p, p: [0.9, 0.95]}
  - {name: eta, eta: 0.0009}
  - {name: contrastive, alpha: 0.6, k: 4}
"""))
    assert [r.name for r in cfg.samplers] == [
        "greedy", "beam-num_beams=4", "beam-num_beams=16", "top_k-k=40", "top_k-k=640",
        "top_k-k=40-temperature=0.7", "top_p-p=0.9", "top_p-p=0.95", "eta-eta=0.0009", "contrastive-alpha=0.6-k=4"]
    assert dict(cfg.samplers[5].params) == {"k": 40, "temperature": 0.7, "interpolation": 0.0}
    assert cfg.model.batch_size == 32 and cfg.data.max_new_tokens == 128 and cfg.data.min_continuation == 64


def test_grid_is_a_cartesian_product_within_an_entry(tmp_path):
    cfg = load_text(tmp_path, BASE.replace("[greedy]", "[{name: top_k, k: [1, 2], temperature: [0.5, 1.5]}]"))
    assert [r.name for r in cfg.samplers] == ["top_k-k=1-temperature=0.5", "top_k-k=1-temperature=1.5",
                                              "top_k-k=2-temperature=0.5", "top_k-k=2-temperature=1.5"]


def test_a_default_value_written_out_names_the_same_run(tmp_path):
    cfg = load_text(tmp_path, BASE.replace("[greedy]", "[{name: top_p, p: 0.9, temperature: 1.0}]"))
    assert cfg.samplers[0].name == "top_p-p=0.9"


ERRORS = [
    ("name: [unclosed\n", r"malformed YAML \(line"),
    (BASE + "colour: red\n", r"unknown key 'colour'"),
    (BASE.replace("model: {name: gpt2}", "model: {name: gpt2, dtpye: float16}"), r"model: unknown key 'dtpye'"),
    (BASE.replace("samplers: [greedy]", "samplers: [top_pp]"), r"samplers\[0\]: unknown sampler 'top_pp' \(did you mean 'top_p'\?\)"),
    (BASE + "scorers: [self_bleau]\n", r"scorers\[0\]: unknown scorer 'self_bleau' \(did you mean 'self_bleu'\?\)"),
    (BASE.replace("[greedy]", "[{name: top_p, p: 1.5}]"), r"samplers\[0\] \(top_p\)\.p: must be in \(0, 1\] \(got 1.5\)"),
    (BASE.replace("[greedy]", "[{name: top_k, k: forty}]"), r"samplers\[0\] \(top_k\)\.k: must be an integer"),
    (BASE.replace("[greedy]", "[{name: top_k, k: 0}]"), r"\.k: must be >= 1"),
    (BASE.replace("[greedy]", "[{name: temperature, temperature: 0}]"), r"\.temperature: must be > 0"),
    (BASE.replace("[greedy]", "[{name: beam, num_beams: 0}]"), r"\.num_beams: must be >= 1"),
    (BASE.replace("[greedy]", "[{name: top_p, k: 3}]"), r"unknown parameter 'k'; top_p takes: p, temperature"),
    (BASE.replace("[greedy]", "[{name: top_p}]"), r"samplers\[0\] \(top_p\): .*missing.*'p'"),
    (BASE.replace("samplers: [greedy]", "samplers: []"), r"samplers: must be a non-empty list \(the grid is empty\)"),
    (BASE.replace("[greedy]", "[{name: top_p, p: []}]"), r"empty list gives an empty grid"),
    (BASE.replace("[greedy]", "[greedy, greedy]"), r"run 'greedy' appears twice"),
    (BASE.replace("data: {source: docs.jsonl}", "data: {source: docs.jsonl, num_prompts: 0}"), r"data.num_prompts: must be >= 1"),
    (BASE.replace("data: {source: docs.jsonl}", "data: {source: docs.jsonl, num_prompts: many}"), r"data.num_prompts: must be an integer"),
    (BASE.replace("data: {source: docs.jsonl}", "data: {source: docs.jsonl, context_tokens: half}"), r"data.context_tokens: must be an integer >= 1 or first_paragraph"),
    (BASE.replace("model: {name: gpt2}", "model: {name: gpt2, dtype: float8}"), r"model.dtype: must be float32, float16 or bfloat16"),
    (BASE.replace("model: {name: gpt2}", "model: {name: gpt2, device: tpu}"), r"model.device: must be auto, cpu, cuda or cuda:N"),
    (BASE.replace("model: {name: gpt2}", "model: {name: gpt2, trust_remote_code: yes please}"), r"model.trust_remote_code: must be true or false"),
    (BASE.replace("data: {source: docs.jsonl}", "data: {}"), r"data: missing required key 'source'"),
    ("model: {name: gpt2}\n", r"missing required key 'name'"),
    ("- just a list\n", r"must be a mapping"),
    (BASE + "oracle: {mode: sideways}\n", r"oracle.mode: must be window or prefix"),
    (BASE + "bootstrap: {resamples: -1}\n", r"bootstrap.resamples: must be >= 0"),
]


@pytest.mark.parametrize("text,message", ERRORS)
def test_each_mistake_gives_one_line_naming_what_to_fix(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as info:
        load_text(tmp_path, text)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "exp.yaml"))


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="experiment file not found"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        config.load(bad)


HF_NAMES = [  # transformers' GenerationConfig name -> the sampler's own parameter (README table)
    ("top_k", "top_k", 40, "k"), ("top_p", "top_p", 0.9, "p"), ("typical", "typical_p", 0.9, "p"),
    ("epsilon", "epsilon_cutoff", 0.0003, "epsilon"), ("eta", "eta_cutoff", 0.0009, "eta"),
    ("min_p", "min_p", 0.1, "p"),
]


@pytest.mark.parametrize("sampler,hf_name,value,own", HF_NAMES)
def test_transformers_parameter_names_are_aliases_and_run_names_stay(tmp_path, sampler, hf_name, value, own):
    by_alias = load_text(tmp_path, BASE.replace("[greedy]", f"[{{name: {sampler}, {hf_name}: {value}, temperature: 0.7}}]"))
    by_field = load_text(tmp_path, BASE.replace("[greedy]", f"[{{name: {sampler}, {own}: {value}, temperature: 0.7}}]"))
    assert by_alias.samplers == by_field.samplers
    assert by_alias.samplers[0].name == f"{sampler}-{own}={value}-temperature=0.7"


def test_contrastive_takes_penalty_alpha_and_top_k_and_a_grid_through_an_alias(tmp_path):
    cfg = load_text(tmp_path, BASE.replace("[greedy]", "[{name: contrastive, penalty_alpha: 0.6, top_k: [4, 8]}]"))
    assert [r.name for r in cfg.samplers] == ["contrastive-alpha=0.6-k=4", "contrastive-alpha=0.6-k=8"]


def test_a_parameter_given_under_both_names_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"samplers\[0\] \(top_p\): 'p' is given twice \(once as 'top_p'\); keep one"):
        load_text(tmp_path, BASE.replace("[greedy]", "[{name: top_p, p: 0.9, top_p: 0.95}]"))
    with pytest.raises(UserError, match=r"unknown parameter 'top_k'; top_p takes: p, temperature, interpolation, "
                                        r"top_p \(= p\)"):
        load_text(tmp_path, BASE.replace("[greedy]", "[{name: top_p, top_k: 3}]"))
