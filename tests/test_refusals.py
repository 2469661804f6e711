"""The README's promise, setting by setting: "a results folder is tied to the settings that made
it: a changed model, data, seed or sampler parameter is refused (with the settings named) rather
than mixed in". Each refusal goes through the command line (`evalharness.cli.main`), prints one
line naming the changed key, exits 2 and leaves every file of the folder as it was (bytes and
modification time). Settings that do not determine generations (scorer options) recompute what
they determine and nothing else."""

import json
import shutil
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.errors import UserError
from evalharness.experiment import config
from evalharness.experiment.pipeline import run_meta
from evalharness.records import Prompt
from evalharness.samplers import SAMPLERS
from evalharness.store import LOCK_FILES, ResultsDir
from helpers import synthetic_documents, write_experiment, write_jsonl

SAMPLERS_YAML = "[greedy, {name: top_p, p: 0.9}]"
SCORERS_YAML = "[repetition, self_bleu]"


@pytest.fixture(scope="module")
def made(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    """A finished results folder and the YAML that made it (never modified by a test: each
    test works on its own copy, so the tests stand alone in any order)."""
    folder = tmp_path_factory.mktemp("refusals")
    yaml_path = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl, SAMPLERS_YAML,
                                 scorers=SCORERS_YAML)
    assert main(["run", str(yaml_path), "--output", str(folder / "results"), "--quiet"]) == 0
    return yaml_path, folder / "results"


@pytest.fixture
def copy(made, tmp_path):
    """This test's own copy of the finished folder, and the YAML text that made it."""
    yaml_path, results = made
    out = tmp_path / "results"
    shutil.copytree(results, out)
    return yaml_path.read_text(), out


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time, but the results lock's (taken by every run)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in LOCK_FILES}


def run_yaml(tmp_path: Path, text: str, out: Path, capsys) -> tuple[int, str]:
    path = tmp_path / "changed.yaml"
    path.write_text(text)
    capsys.readouterr()
    status = main(["run", str(path), "--output", str(out), "--quiet"])
    return status, capsys.readouterr().err


def assert_refused(status: int, err: str, named: str) -> None:
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"holds generations made with other settings ({named}); rerun with --overwrite" in err, err


def same_model_elsewhere(model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model, tmp_path / "same-weights-other-name"))


def same_documents_elsewhere(data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(data, tmp_path / "same-documents-other-name.jsonl"))


def documents_in_another_field(data: Path, tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    return write_jsonl(tmp_path / "body.jsonl", [r["text"] for r in rows], field="body")


@pytest.mark.parametrize("change,named", [
    (lambda t, m, d, tmp: t.replace(str(m), str(same_model_elsewhere(m, tmp))), "model.name"),
    (lambda t, m, d, tmp: t.replace("device: cpu", "device: cpu, dtype: bfloat16"), "model.dtype"),
    (lambda t, m, d, tmp: t.replace(str(d), str(same_documents_elsewhere(d, tmp))), "data.source"),
    (lambda t, m, d, tmp: t.replace(f"source: {d}", f"source: {documents_in_another_field(d, tmp)}, text_field: body"),
     "data.source, data.text_field"),
    (lambda t, m, d, tmp: t.replace("context_tokens: 8", "context_tokens: 7"), "data.context_tokens"),
    (lambda t, m, d, tmp: t.replace("max_new_tokens: 12", "max_new_tokens: 10"), "data.max_new_tokens"),
    (lambda t, m, d, tmp: t.replace("max_new_tokens: 12", "max_new_tokens: 12, min_continuation_tokens: 4"),
     "data.min_continuation_tokens"),
    (lambda t, m, d, tmp: t.replace("seed: 0", "seed: 1"), "seed"),
], ids=["model.name", "model.dtype", "data.source", "data.text_field", "context_tokens",
        "max_new_tokens", "min_continuation_tokens", "seed"])
def test_a_changed_experiment_setting_is_refused_naming_it(copy, tmp_path, capsys, tiny_model_dir, corpus_jsonl,
                                                           change, named):
    text, out = copy
    changed = change(text, tiny_model_dir, corpus_jsonl, tmp_path)
    assert changed != text
    before = snapshot(out)
    assert_refused(*run_yaml(tmp_path, changed, out, capsys), named)
    assert snapshot(out) == before


def test_other_weights_under_the_same_model_name_are_refused(made, tmp_path, capsys, corpus_jsonl):
    from helpers import build_tiny_model

    model = build_tiny_model(tmp_path / "model", seed=0)
    yaml_text = write_experiment(tmp_path / "a.yaml", model, corpus_jsonl, "[greedy]").read_text()
    out = tmp_path / "out"
    assert run_yaml(tmp_path, yaml_text, out, capsys)[0] == 0
    build_tiny_model(model, seed=1)  # retrained in place
    before = snapshot(out)
    assert_refused(*run_yaml(tmp_path, yaml_text, out, capsys), "weights")
    assert snapshot(out) == before


def test_changed_documents_under_the_same_data_source_are_refused(tmp_path, capsys, tiny_model_dir):
    """Same path, same settings, other content: the prompts on disk no longer match (check_prompts)."""
    data = write_jsonl(tmp_path / "docs.jsonl", synthetic_documents(40, seed=2))
    yaml_text = write_experiment(tmp_path / "a.yaml", tiny_model_dir, data, "[greedy]").read_text()
    out = tmp_path / "out"
    assert run_yaml(tmp_path, yaml_text, out, capsys)[0] == 0
    write_jsonl(data, synthetic_documents(40, seed=3))  # the file edited in place
    before = snapshot(out)
    status, err = run_yaml(tmp_path, yaml_text, out, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "prompt 0000" in err and "differs from the one this configuration selects" in err
    assert "data.source" in err and "--overwrite" in err
    assert snapshot(out) == before


def test_a_run_folder_made_with_other_sampler_parameters_is_refused_before_anything_is_written(copy, tmp_path, capsys):
    """A run's name shows only the parameters set away from their defaults, so the same name can
    stand for other values: run.json written by a version whose top_p default temperature
    differed. The refusal names the parameter, and comes before `pure` (new, listed first) has
    generated anything."""
    text, out = copy
    meta_path = out / "top_p-p=0.9" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["determined_by"]["params"]["temperature"] = 0.9
    meta["fingerprint"] = "from-an-older-default"
    meta_path.write_text(json.dumps(meta))
    before = snapshot(out)
    changed = text.replace("samplers: [greedy,", "samplers: [pure, greedy,")
    assert_refused(*run_yaml(tmp_path, changed, out, capsys), "params.temperature")
    assert snapshot(out) == before


def test_a_changed_sampler_parameter_makes_a_new_run_and_never_touches_the_old_one(copy, tmp_path, capsys):
    text, out = copy
    old = {k: v for k, v in snapshot(out).items() if k.startswith("top_p-p=0.9/")}
    status, err = run_yaml(tmp_path, text.replace("p: 0.9", "p: 0.8"), out, capsys)
    assert status == 0, err
    assert {k: v for k, v in snapshot(out).items() if k.startswith("top_p-p=0.9/")} == old
    rows = json.loads((out / "summary.json").read_text())
    assert [row["run"] for row in rows] == ["human", "greedy", "top_p-p=0.8"]
    assert len((out / "top_p-p=0.8" / "generations.jsonl").read_text().splitlines()) == 6


# every parameter of every registered sampler: a valid value and another one
PARAMETER_VALUES = {"num_beams": (2, 3), "length_penalty": (1.0, 0.5), "alpha": (0.6, 0.5), "k": (3, 4),
                    "epsilon": (0.001, 0.002), "eta": (0.001, 0.002), "temperature": (1.0, 0.7),
                    "interpolation": (0.0, 0.1), "p": (0.9, 0.8), "tau": (3.0, 4.0), "n": (1.0, 2.0),
                    "top_k": (50, 40), "top_p": (1.0, 0.9), "typical_p": (1.0, 0.9), "min_p": (0.0, 0.1),
                    "epsilon_cutoff": (0.0, 0.001), "eta_cutoff": (0.0, 0.001),
                    "interpolate_with": ("tempered", "untempered"), "prefer_finished": (False, True)}


def sampler_parameter_cases() -> list:
    return [pytest.param(name, parameter, id=f"{name}.{parameter}")
            for name in SAMPLERS.names() for parameter, _ in SAMPLERS.get(name).parameters()]


@pytest.mark.parametrize("sampler,parameter", sampler_parameter_cases())
def test_every_sampler_parameter_changes_the_run_name_or_is_refused(sampler, parameter):
    """A changed value either names another run folder or, under the same name, another
    fingerprint (which open_run refuses, naming `params.<parameter>`)."""
    def spec(value):
        params = {p: PARAMETER_VALUES[p][0] for p, default in SAMPLERS.get(sampler).parameters() if default is None}
        params[parameter] = value
        return config.make_run(SAMPLERS.get(sampler), sampler, params, "samplers[0]")

    assert parameter in PARAMETER_VALUES, f"add a pair of values for {sampler}.{parameter}"
    first, second = (spec(v) for v in PARAMETER_VALUES[parameter])
    assert first.name != second.name
    key = {"seed": 0}  # the experiment's part of the key: the CLI tests above
    assert run_meta(first, key)["fingerprint"] != run_meta(second, key)["fingerprint"]


def test_a_changed_scorer_option_rescores_without_regenerating(copy, tmp_path, capsys):
    """Scores are not generations: a changed scorer option (Self-BLEU's n) recomputes the scores
    (no stale cache: the numbers equal those of a fresh folder, and differ from the old ones)
    and leaves every generation as it was."""
    text, out = copy
    old = {r["run"]: r["metrics"]["self_bleu"] for r in json.loads((out / "summary.json").read_text())}
    generations = {k: v for k, v in snapshot(out).items() if k.endswith("generations.jsonl")}
    changed = text.replace("scorers: [repetition, self_bleu]", "scorers: [repetition, {name: self_bleu, n: 2}]")
    assert changed != text
    status, err = run_yaml(tmp_path, changed, out, capsys)
    assert status == 0, err
    assert {k: v for k, v in snapshot(out).items() if k.endswith("generations.jsonl")} == generations
    fresh = tmp_path / "fresh"
    assert run_yaml(tmp_path, changed, fresh, capsys)[0] == 0
    rows = {r["run"]: r["metrics"]["self_bleu"] for r in json.loads((out / "summary.json").read_text())}
    expected = {r["run"]: r["metrics"]["self_bleu"] for r in json.loads((fresh / "summary.json").read_text())}
    assert rows == expected and rows != old


def prompt(pid: str, context: tuple[int, ...]) -> Prompt:
    return Prompt(pid, f"d{pid}", "text", context, (5, 6, 0), "more", True)


def test_check_prompts_accepts_the_same_and_new_prompts_and_refuses_changed_ones(tmp_path):
    store = ResultsDir(tmp_path)
    store.write_prompts([prompt("00000", (1, 2)), prompt("00001", (3, 4))])
    store.check_prompts([prompt("00000", (1, 2)), prompt("00001", (3, 4))])
    store.check_prompts([prompt("00000", (1, 2)), prompt("00001", (3, 4)), prompt("00002", (9,))])  # more prompts
    store.check_prompts([prompt("00001", (3, 4))])  # fewer (--limit)
    with pytest.raises(UserError, match=r"prompt 00001 on disk differs .*data\.source.*--overwrite"):
        store.check_prompts([prompt("00000", (1, 2)), prompt("00001", (3, 4, 5))])
    changed_text = Prompt("00000", "d00000", "text", (1, 2), (5, 6, 0), "other", True)
    with pytest.raises(UserError, match="prompt 00000 on disk differs"):
        store.check_prompts([changed_text])
