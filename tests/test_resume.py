"""Crash safety: partial lines, atomic writes, and a real `run` killed at seeded points of its progress."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.errors import UserError
from evalharness.experiment.faults import KILL_ENV
from evalharness.store import ResultsDir, append_jsonl, read_jsonl, write_atomic
from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = "[pure, {name: top_p, p: 0.9}, greedy, {name: contrastive, alpha: 0.5, k: 3}]"
SCORERS = "[perplexity, repetition, self_bleu, zipf, distinct]"


def test_a_partial_trailing_line_is_ignored_and_repaired(tmp_path):
    path = tmp_path / "g.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as handle:
        handle.write('{"a": 3, "trunc')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text().endswith("trunc")
    assert read_jsonl(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a":1}\n{"a":2}\n'


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    write_atomic(path, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_atomic(path, Boom())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind


def test_a_run_folder_with_another_fingerprint_is_refused(tmp_path):
    store = ResultsDir(tmp_path)
    store.open_run("pure", {"fingerprint": "a", "determined_by": {"seed": 0}})
    with pytest.raises(UserError, match=r"other settings \(seed\)"):
        store.open_run("pure", {"fingerprint": "b", "determined_by": {"seed": 1}})


def test_a_rerun_removes_the_temporary_files_a_killed_run_left(tmp_path, tiny_model_dir, corpus_jsonl):
    """A SIGKILL between mkstemp and rename in write_atomic leaves `.run.json.XXXX.tmp`."""
    from evalharness.experiment import config
    from evalharness.experiment.pipeline import RunOptions, run_experiment

    yaml_path = write_experiment(tmp_path / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[pure]", num_prompts=4)
    stale = [tmp_path / "out" / ".manifest.json.abc123.tmp", tmp_path / "out" / "pure" / ".run.json.x1y2.tmp",
             tmp_path / "out" / "cache" / "features" / "minilm" / "pure-0123.npy.tmp.npy"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    run_experiment(config.load(yaml_path), RunOptions(output=tmp_path / "out"))
    assert not [p for p in stale if p.exists()]
    assert (tmp_path / "out" / "pure" / "generations.jsonl").exists()


def cli_process(*args, kill_after: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    if kill_after:
        env[KILL_ENV] = kill_after
    return subprocess.Popen([sys.executable, "-m", "evalharness", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def generation_lines(root: Path) -> dict[str, list[str]]:
    return {p.parent.name: sorted(p.read_text().splitlines()) for p in root.glob("*/generations.jsonl")}


@pytest.fixture(scope="module")
def experiment(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    yaml_path = write_experiment(folder / "exp.yaml", tiny_model_dir, corpus_jsonl, SAMPLERS, num_prompts=16,
                                 max_new=24, scorers=SCORERS)
    reference = folder / "reference"
    proc = cli_process("run", yaml_path, "--output", reference, "--batch-size", 2)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    return yaml_path, reference


def count_records(root: Path) -> int:
    """Per-prompt records of every kind: generations and the human text under each sampler."""
    return sum(p.read_bytes().count(b"\n") for pattern in ("*/generations.jsonl", "*/human_logprobs.jsonl")
               for p in root.glob(pattern))


def test_killed_runs_resume_to_exactly_the_uninterrupted_result(experiment, tmp_path):
    """SIGKILL a real run at seeded random points of its progress - right after a chosen round
    of batches (2 prompts each) is on disk, three times, and once more while scoring (after the
    second run's scores) - then let it finish: nothing lost, duplicated or truncated, and every
    file equals the uninterrupted run's. The kill points come from the code
    (EVALHARNESS_TEST_KILL_AFTER), so each one is hit exactly, however loaded the machine."""
    yaml_path, reference = experiment
    rounds = count_records(reference) // 2
    out = tmp_path / "killed"
    points = sorted(random.Random(1234).sample(range(1, rounds), 3))
    for done, point in zip([0, *points], points):
        proc = cli_process("run", yaml_path, "--output", out, "--batch-size", 2, kill_after=f"round:{point - done}")
        assert proc.wait(timeout=600) == -signal.SIGKILL, proc.stderr.read()
        assert count_records(out) == 2 * point  # exactly the rounds before the kill point, whole
        for lines in generation_lines(out).values():  # never a duplicate prompt on disk
            prompt_ids = [json.loads(x)["prompt_id"] for x in lines]
            assert len(prompt_ids) == len(set(prompt_ids))
    scoring = cli_process("run", yaml_path, "--output", out, "--batch-size", 2, kill_after="scores:2")
    assert scoring.wait(timeout=600) == -signal.SIGKILL, scoring.stderr.read()
    assert count_records(out) == count_records(reference) and len(list(out.glob("*/scores.json"))) == 2
    assert not (out / "summary.json").exists()
    final = cli_process("run", yaml_path, "--output", out, "--batch-size", 2)
    assert final.wait(timeout=600) == 0, final.stderr.read()
    assert generation_lines(out) == generation_lines(reference)
    for lines in generation_lines(out).values():
        assert len(lines) == 16
    assert (out / "summary.json").read_text() == (reference / "summary.json").read_text()
    assert not list(out.rglob("*.tmp"))


def test_retrained_weights_under_the_same_name_never_reuse_generations(tmp_path, corpus_jsonl, capsys):
    from evalharness.cli import main
    from helpers import build_tiny_model

    model = build_tiny_model(tmp_path / "model", seed=0)
    yaml_path = write_experiment(tmp_path / "exp.yaml", model, corpus_jsonl, "[greedy]")
    assert main(["run", str(yaml_path), "--output", str(tmp_path / "out")]) == 0
    build_tiny_model(tmp_path / "model", seed=1)  # "retrained": same folder, other weights
    capsys.readouterr()
    assert main(["run", str(yaml_path), "--output", str(tmp_path / "out")]) == 2
    assert "other settings (weights)" in capsys.readouterr().err


def test_a_folder_with_summaries_but_no_generations_is_simply_rerun(tmp_path, corpus_jsonl, tiny_model_dir):
    """What git holds of results/<name>/ (manifest, summaries, plots) does not block a rerun."""
    from evalharness.cli import main

    yaml_path = write_experiment(tmp_path / "exp.yaml", tiny_model_dir, corpus_jsonl, "[greedy]")
    out = tmp_path / "out"
    assert main(["run", str(yaml_path), "--output", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["determined_by"]["weights"] = "from another machine"
    (out / "manifest.json").write_text(json.dumps(manifest))
    for path in out.glob("*/generations.jsonl"):
        path.unlink()
    assert main(["run", str(yaml_path), "--output", str(out)]) == 0


def test_overwrite_removes_what_run_wrote_and_keeps_notes(tmp_path, corpus_jsonl, tiny_model_dir):
    from evalharness.cli import main

    yaml_path = write_experiment(tmp_path / "exp.yaml", tiny_model_dir, corpus_jsonl, "[greedy, pure]")
    out = tmp_path / "out"
    assert main(["run", str(yaml_path), "--output", str(out)]) == 0
    (out / "README.md").write_text("my reading of the table")
    (out / "greedy" / "generations.jsonl").write_text('{"stale": tru')
    yaml_path.write_text(yaml_path.read_text().replace("[greedy, pure]", "[greedy]"))
    assert main(["run", str(yaml_path), "--output", str(out), "--overwrite"]) == 0
    assert (out / "README.md").read_text() == "my reading of the table"
    assert not (out / "pure").exists()
    assert len((out / "greedy" / "generations.jsonl").read_text().splitlines()) == 6
