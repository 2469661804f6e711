"""The Python API (README, "Python API") and `--set` overrides: every line of the README section
is exercised here, on the tiny local model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import evalharness
from evalharness.experiment import config
from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: t
model: {name: gpt2}
data: {source: docs.jsonl}
samplers: [greedy, {name: top_p, p: 0.9}]
"""


@pytest.fixture
def yaml_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(BASE))
    return path


def test_import_evalharness_stays_light_and_names_the_api():
    code = ("import sys, evalharness\n"
            "assert evalharness.UserError.__module__ == 'evalharness.errors'\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
            "evalharness.load_config\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr
    assert {"run", "load_config", "read_summary", "SAMPLERS", "SCORERS", "UserError"} <= set(dir(evalharness))
    with pytest.raises(AttributeError):
        evalharness.no_such_name  # noqa: B018


def test_registries_are_the_ones_plugins_register_into():
    from evalharness.samplers import SAMPLERS
    from evalharness.scorers import SCORERS

    assert evalharness.SAMPLERS is SAMPLERS and evalharness.SCORERS is SCORERS
    assert "top_p" in evalharness.SAMPLERS and "mauve" in evalharness.SCORERS


def test_load_config_from_a_file_and_from_a_mapping_with_overrides(yaml_file):
    cfg = evalharness.load_config(yaml_file, overrides=["model.name=distilgpt2", "data.num_prompts=100",
                                                        "samplers.1.p=[0.9, 0.95]", "seed=3"])
    assert (cfg.model.name, cfg.data.num_prompts, cfg.seed) == ("distilgpt2", 100, 3)
    assert [r.name for r in cfg.samplers] == ["greedy", "top_p-p=0.9", "top_p-p=0.95"]
    assert cfg.overrides == ("model.name=distilgpt2", "data.num_prompts=100", "samplers.1.p=[0.9, 0.95]", "seed=3")
    import yaml

    same = evalharness.load_config(yaml.safe_load(BASE), overrides=["model.name=distilgpt2", "data.num_prompts=100",
                                                                   "samplers.1.p=[0.9, 0.95]", "seed=3"])
    assert same.samplers == cfg.samplers and same.model == cfg.model and same.data == cfg.data
    assert evalharness.load_config(yaml_file).overrides == ()


def test_an_override_may_add_a_section_the_file_does_not_have_and_turn_a_name_into_a_mapping(yaml_file):
    cfg = evalharness.load_config(yaml_file, ["bootstrap.resamples=50", "samplers.0=pure", "oracle.mode=prefix"])
    assert cfg.bootstrap.resamples == 50 and cfg.oracle.mode == "prefix"
    assert cfg.samplers[0].name == "pure"
    cfg = evalharness.load_config(yaml_file, ["samplers.0.temperature=0.7", "samplers.0.name=temperature"])
    assert cfg.samplers[0].name == "temperature-temperature=0.7"


@pytest.mark.parametrize("override,message", [
    ("model.nmae=gpt2", "--set 'model.nmae=gpt2': unknown key 'nmae' in model (did you mean 'model.name'?)"),
    ("modle.name=gpt2", "unknown key 'modle' in the experiment file (did you mean 'model.name'?)"),
    ("data.num_promts=5", "(did you mean 'data.num_prompts'?)"),
    ("data.num_prompts=0", "data.num_prompts: must be >= 1 (got 0)"),  # validated as the file is
    ("data.num_prompts=many", "data.num_prompts: must be an integer (got 'many')"),
    ("samplers.1.p=1.5", "samplers[1] (top_p).p: must be in (0, 1] (got 1.5)"),
    ("samplers.1.q=1", "samplers[1] (top_p): unknown parameter 'q'"),
    ("samplers.5.p=0.9", "samplers is a list of 2; index it by position 0..1 (got '5')"),
    ("seed", "write KEY=VALUE"),
    ("model..name=x", "empty key"),
    ("seed=[1", "the value is not valid YAML"),
    ("name.first=x", "name holds 't', not a mapping of keys"),
])
def test_a_bad_override_is_one_line_naming_it(yaml_file, override, message):
    with pytest.raises(evalharness.UserError) as caught:
        evalharness.load_config(yaml_file, [override])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_overrides_must_be_strings(yaml_file):
    with pytest.raises(evalharness.UserError, match="overrides: a list of 'dotted.key=value' strings"):
        evalharness.load_config(yaml_file, "seed=1")


@pytest.fixture(scope="module")
def api_run(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    yaml_path = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl,
                                 "[greedy, {name: top_p, p: 0.9}, {name: mirostat, tau: 3.0}, {name: top_n_sigma, n: 1.0}]",
                                 num_prompts=4, max_new=6)
    root = evalharness.run(yaml_path, output=folder / "out", device="cpu", batch_size=2,
                           overrides=["data.num_prompts=3"])
    return yaml_path, root


def test_run_returns_the_results_folder_and_read_summary_reads_it(api_run):
    yaml_path, root = api_run
    assert root.is_dir() and (root / "summary.json").exists()
    rows = evalharness.read_summary(root)
    assert [r["run"] for r in rows] == ["human", "greedy", "top_p-p=0.9", "mirostat-tau=3.0", "top_n_sigma-n=1.0"]
    for row in rows[3:]:  # the stateful sampler too has a probability for human text
        assert 0 <= row["human_coverage"]["value"] <= 1
    top_p = rows[2]
    assert top_p["sampler"] == "top_p" and top_p["params"] == {"p": 0.9, "temperature": 1.0, "interpolation": 0.0}
    raw = next(r for r in json.loads((root / "summary.json").read_text()) if r["run"] == "top_p-p=0.9")
    assert top_p["mean_length"] == {"value": raw["metrics"]["mean_length"], "ci": tuple(raw["ci"]["mean_length"])}
    assert len((root / "prompts.jsonl").read_text().splitlines()) == 3  # the override took effect
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["config"]["overrides"] == ["data.num_prompts=3"]


def test_run_takes_a_mapping_or_a_loaded_config_and_resumes_the_same_folder(api_run):
    import yaml

    yaml_path, root = api_run
    before = {p: p.stat().st_mtime_ns for p in root.rglob("generations.jsonl")}
    mapping = yaml.safe_load(yaml_path.read_text())
    assert evalharness.run(mapping, output=root, overrides=["data.num_prompts=3"]) == root
    cfg = evalharness.load_config(yaml_path, overrides=["data.num_prompts=3"])
    assert evalharness.run(cfg, device="cpu", output=root) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("generations.jsonl")} == before  # nothing regenerated


def test_a_changed_override_on_an_existing_folder_is_refused_like_a_changed_yaml(api_run):
    yaml_path, root = api_run
    with pytest.raises(evalharness.UserError, match=r"holds generations made with other settings \(seed\)"):
        evalharness.run(yaml_path, output=root, overrides=["seed=1"])
    with pytest.raises(evalharness.UserError, match=r"other settings \(data.max_new_tokens\)"):
        evalharness.run(evalharness.load_config(yaml_path, ["data.max_new_tokens=5"]), output=root)


def test_run_rejects_bad_options_with_user_errors(api_run, tmp_path):
    yaml_path, _ = api_run
    with pytest.raises(evalharness.UserError, match=r"limit: must be an integer >= 1 \(got 0\)"):
        evalharness.run(yaml_path, limit=0, output=tmp_path / "x")
    with pytest.raises(evalharness.UserError, match="overrides: give them to load_config"):
        evalharness.run(evalharness.load_config(yaml_path), overrides=["seed=1"], output=tmp_path / "x")
    with pytest.raises(evalharness.UserError, match="no such results folder"):
        evalharness.read_summary(tmp_path / "nothing")
    assert not (tmp_path / "x").exists()


def test_cli_set_overrides_and_names_itself_evalharness(tiny_model_dir, corpus_jsonl, tmp_path, capsys):
    from evalharness.cli import main

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    script = Path(sys.executable).parent / "evalharness"
    argv = [str(script)] if script.exists() else [sys.executable, "-c", "import sys; sys.argv[0] = 'evalharness'; "
                                                  "from evalharness.cli import main; sys.exit(main())"]
    helped = subprocess.run([*argv, "--help"], capture_output=True, text=True, env=env)  # light: no torch
    assert helped.stdout.startswith("usage: evalharness ") and "python -m" not in helped.stdout
    yaml_path = write_experiment(tmp_path / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[greedy]", max_new=4)
    assert main(["run", str(yaml_path), "--output", str(tmp_path / "out"), "--set", "data.num_prompts=2",
                 "--set", "samplers=[pure]"]) == 0
    assert (tmp_path / "out" / "pure" / "generations.jsonl").exists()
    assert len((tmp_path / "out" / "prompts.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["run", str(yaml_path), "--set", "data.num_promts=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --set 'data.num_promts=2': unknown key 'num_promts' in data (did you mean 'data.num_prompts'?)")
