"""The `evaluate` scorer: a local evaluate module in the summary, offline (network cut with
`unshare -n`), and one-line exit-2 errors before generation for modules that cannot work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evalharness import evaluate_modules
from evalharness.experiment import config
from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN
from evalharness.scorers.evaluate_metric import EvaluateMetric, numeric_outputs
from helpers import write_experiment
from scorer_helpers import ctx, gen

MODULE = '''
import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="test module", citation="", inputs_description="",
                                   features=datasets.Features({features}))

    def _compute(self, predictions, {args}scale=1.0):
        {body}
'''

WORD_OVERLAP = dict(
    cls="WordOverlap", args="references, ",
    features='{"predictions": datasets.Value("string"), "references": datasets.Value("string")}',
    body="""overlap = [len(set(p.split()) & set(r.split())) / max(1, len(set(r.split()))) for p, r in zip(predictions, references)]
        return {"overlap": [scale * o for o in overlap], "pairs": len(predictions), "name": "not a number",
                "nested": {"first": scale * overlap[0], "flags": [True, False]}, "pair_of": [1.0, 2.0]}""")
WORD_COUNT = dict(
    cls="WordCount", args="", features='{"predictions": datasets.Value("string")}',
    body='return {"words": scale * sum(len(p.split()) for p in predictions) / len(predictions)}')
NO_NUMBERS = dict(
    cls="NoNumbers", args="", features='{"predictions": datasets.Value("string")}',
    body='return {"verdict": "fine"}')


def write_module(root: Path, name: str, spec: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(MODULE.format(**spec))
    return folder


def test_numeric_outputs_flatten_numbers_and_set_per_text_lists_apart():
    result = {"a": 1, "b": [0.5, 1.5, 2.5], "c": {"d": np.float32(2.0), "e": "x", "f": [1.0, 2.0]}, "g": True}
    scalars, per_text = numeric_outputs(result, "m", n=3)
    assert scalars == {"m.a": 1.0, "m.c.d": 2.0, "m.c.f.0": 1.0, "m.c.f.1": 2.0}
    assert list(per_text) == ["m.b"] and per_text["m.b"].tolist() == [0.5, 1.5, 2.5]


def test_scorer_values_keys_and_the_human_row(tmp_path):
    overlap = EvaluateMetric.from_options({"path": str(write_module(tmp_path, "word_overlap", WORD_OVERLAP)),
                                           "as": "ov", "scale": 2.0})
    human = [gen([1], run=HUMAN_RUN, prompt_id=str(i), text=t) for i, t in enumerate(["a b", "c d", "e f g"])]
    run = [gen([1], prompt_id=str(i), text=t) for i, t in enumerate(["a x", "c d", "y z"])]
    result = overlap.score(run, ctx(human, resamples=50))
    assert result.values == {"ov.pairs": 3.0, "ov.nested.first": 1.0, "ov.pair_of.0": 1.0, "ov.pair_of.1": 2.0,
                             "ov.overlap": pytest.approx(2.0 * (0.5 + 1.0 + 0.0) / 3)}
    assert set(result.ci) == {"ov.overlap"} and result.per_sample["ov.overlap"] == (1.0, 2.0, 0.0)
    assert overlap.score(human, ctx(human)).values == {}  # needs references: nothing for human vs itself
    count = EvaluateMetric(path=str(write_module(tmp_path, "word_count", WORD_COUNT)))
    assert count.alias == "word_count"
    assert count.score(human, ctx(human)).values == {"word_count.words": pytest.approx(7 / 3)}


def test_config_passes_other_keys_to_the_module_and_keeps_aliases_apart(tmp_path):
    folder = write_module(tmp_path, "word_count", WORD_COUNT)
    specs = config._scorers([{"name": "evaluate", "path": str(folder), "as": "a", "scale": 3},
                             {"name": "evaluate", "path": str(folder), "as": "b"}])
    built = [s.build() for s in specs if s.name == "evaluate"]
    assert [(b.alias, b.kwargs) for b in built] == [("a", (("scale", 3),)), ("b", ())]
    with pytest.raises(UserError, match=r"scorers\[1\] \(evaluate\): a second entry for 'evaluate:a'"):
        config._scorers([{"name": "evaluate", "path": str(folder), "as": "a"},
                         {"name": "evaluate", "path": str(folder), "as": "a", "scale": 2}])
    with pytest.raises(UserError, match=r"scorers\[0\] \(evaluate\)\.path: required"):
        config._scorers([{"name": "evaluate", "as": "a"}])


def test_preflight_names_modules_that_cannot_work(tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.py").write_text("import evaluate\nraise RuntimeError('this module is broken')\n")
    with pytest.raises(UserError, match=r"could not load evaluate module .*broken.*this module is broken"):
        EvaluateMetric(path=str(broken)).preflight()
    with pytest.raises(UserError, match="returned no numbers"):
        EvaluateMetric(path=str(write_module(tmp_path, "no_numbers", NO_NUMBERS))).preflight()
    with pytest.raises(UserError, match="failed on a test input"):
        EvaluateMetric(path=str(write_module(tmp_path, "word_count", WORD_COUNT)), kwargs=(("colour", 1),)).preflight()
    monkeypatch.setattr("evalharness.generation.models.hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(UserError, match="not a local folder and the Hugging Face Hub is unreachable"):
        EvaluateMetric(path="evalharness-test/no-such-metric").preflight()


def offline(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `command` with the network cut (a fresh network namespace); skip where not permitted."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(["unshare", "-n", *command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_runs_local_modules_with_the_network_cut(tmp_path, tiny_model_dir, corpus_jsonl):
    """A module written here and our five modules, through `python -m evalharness run`, offline."""
    folder = write_module(tmp_path, "word_overlap", WORD_OVERLAP)
    ours = ", ".join(f"{{name: evaluate, path: {evaluate_modules.path(n)}, as: ev_{n}}}"
                     for n in evaluate_modules.names() if n != "detectability")
    detect = f"{{name: evaluate, path: {evaluate_modules.path('detectability')}, as: ev_det, features: [tfidf], folds: 2, inner_folds: 2}}"
    scorers = f"[length, {{name: evaluate, path: {folder}, as: ov, scale: 1.0}}, {ours}, {detect}]"
    good = write_experiment(tmp_path / "good.yaml", tiny_model_dir, corpus_jsonl, "[greedy]", scorers=scorers,
                            num_prompts=10)
    out = offline([sys.executable, "-m", "evalharness", "run", str(good), "--output", str(tmp_path / "res")], tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["run"]: r for r in json.loads((tmp_path / "res" / "summary.json").read_text())}
    greedy, human = rows["greedy"]["metrics"], rows[HUMAN_RUN]["metrics"]
    assert {"ov.overlap", "ov.pairs", "ov.nested.first"} <= set(greedy) and "ov.overlap" in rows["greedy"]["ci"]
    assert {"ev_self_bleu.self_bleu", "ev_zipf.zipf", "ev_repetition.repetition", "ev_distinct.distinct_1",
            "ev_det.detectability_auc_tfidf"} <= set(greedy)
    assert not any(m.startswith(("ov.", "ev_det.")) for m in human)  # these need references
    assert "ev_zipf.zipf" in human  # this one does not


def test_cli_stops_before_generation_on_a_module_it_cannot_get(tmp_path, tiny_model_dir, corpus_jsonl, monkeypatch, capsys):
    from evalharness.cli import main

    monkeypatch.setattr("evalharness.generation.models.hub_reachable", lambda timeout=5.0: False)  # as offline
    hub = write_experiment(tmp_path / "hub.yaml", tiny_model_dir, corpus_jsonl, "[greedy]",
                           scorers="[{name: evaluate, path: no_such_metric_evalharness}]")
    assert main(["run", str(hub), "--output", str(tmp_path / "hub")]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "'no_such_metric_evalharness'" in message and "unreachable" in message, message
    assert not (tmp_path / "hub").exists()  # refused before the results folder, let alone generation
