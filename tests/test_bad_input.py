"""The bad-input matrix of `run`: one line naming what to fix, exit 2, results folder untouched."""

import hashlib
import re
from pathlib import Path

import pytest

from evalharness.cli import main
from helpers import synthetic_documents, write_experiment, write_jsonl


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    """A finished results folder that no failed run may touch."""
    folder = tmp_path_factory.mktemp("bad")
    yaml_path = write_experiment(folder / "good.yaml", tiny_model_dir, corpus_jsonl, "[greedy, {name: top_k, k: 5}]")
    out = folder / "results"
    assert main(["run", str(yaml_path), "--output", str(out)]) == 0
    return yaml_path, out


def replace(old: str, new: str):
    def mutate(text: str, tmp: Path) -> str:
        assert old in text, old
        return text.replace(old, new)
    return mutate


def with_source(make_file):
    def mutate(text: str, tmp: Path) -> str:
        return re.sub(r"source: [^,}]+", f"source: {make_file(tmp)}", text)
    return mutate


def latin1_file(tmp: Path) -> Path:
    path = tmp / "latin1.txt"
    path.write_bytes("caf\xe9 ".encode("latin-1") * 500)
    return path


# case -> (how to break the good YAML, message that must appear)
MATRIX = {
    "malformed YAML": (lambda t, tmp: t + "samplers: [unclosed\n", "malformed YAML"),
    "unknown top-level key": (lambda t, tmp: t + "temprature: 3\n", "unknown key 'temprature'"),
    "unknown sampler": (replace("samplers: [greedy", "samplers: [gready"), "did you mean 'greedy'"),
    "unknown scorer": (replace("scorers: [length]", "scorers: [zipff]"), "did you mean 'zipf'"),
    "parameter out of range": (replace("k: 5", "k: -5"), "samplers[1] (top_k).k: must be >= 1"),
    "parameter of the wrong type": (replace("k: 5", "k: five"), "samplers[1] (top_k).k: must be an integer"),
    "empty grid": (replace("samplers: [greedy, {name: top_k, k: 5}]", "samplers: []"), "the grid is empty"),
    "missing data file": (with_source(lambda tmp: tmp / "nowhere.jsonl"), "no such file"),
    "empty data": (with_source(lambda tmp: write_jsonl(tmp / "empty.jsonl", [])), "holds no documents"),
    "too few qualifying documents": (with_source(lambda tmp: write_jsonl(tmp / "few.jsonl", synthetic_documents(3, 9))),
                                     "only 3 of 3 documents"),
    "non-UTF-8 text": (with_source(latin1_file), "is not UTF-8 text"),
    "context + new tokens too long": (replace("max_new_tokens: 12", "max_new_tokens: 121"),
                                      "= 129 tokens exceeds the model's maximum length of 128"),
    "hub model while offline": (lambda t, tmp: re.sub(r"name: /[^,]+", "name: nobody/no-such-model", t),
                                "'nobody/no-such-model' is not a local directory"),
    "hub featuriser while offline": (replace("scorers: [length]", "scorers: [{name: mauve, featurizer: nobody/enc}]"),
                                     "featurizer: 'nobody/enc' is not a local directory"),
}


@pytest.mark.parametrize("case", list(MATRIX) + ["unwritable output folder"])
def test_bad_input(case, good, tmp_path, capsys, monkeypatch):
    # An unreachable Hub, whatever this machine's network: what the user sees must not depend on it.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # read when it was imported
    monkeypatch.setattr("evalharness.generation.models.hub_reachable", lambda timeout=5.0: False)
    yaml_path, out = good
    output = out
    if case == "unwritable output folder":
        (tmp_path / "a-file").write_text("not a folder")
        text, output, message = yaml_path.read_text(), tmp_path / "a-file" / "sub", "--output: cannot write to"
    else:
        mutate, message = MATRIX[case]
        text = mutate(yaml_path.read_text(), tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    before = tree_digest(out)
    capsys.readouterr()
    status = main(["run", str(bad), "--output", str(output)])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree_digest(out) == before
