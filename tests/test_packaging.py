"""What the package declares and how it behaves around other processes: its dependencies match
its imports, offline mode is huggingface_hub's own, and a results folder has one writer at a time."""

import ast
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import evalharness
from evalharness.cli import main
from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for mark in "<>=!~[ ":
        name = name.split(mark)[0]
    return name.strip().lower().replace("_", "-")


def declared(section: list[str]) -> dict[str, str]:
    return {requirement_name(r): r for r in section}


def test_every_library_the_package_imports_is_declared():
    imported = set()
    for path in (REPO / "evalharness").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    imported -= set(sys.stdlib_module_names) | {"evalharness"}
    distributions = importlib.metadata.packages_distributions()
    runtime = declared(PYPROJECT["project"]["dependencies"])
    missing = sorted(name for name in imported
                     if not any(requirement_name(d) in runtime for d in distributions.get(name, [name])))
    assert missing == []
    assert "huggingface-hub" in runtime and "filelock" in runtime


def test_test_only_libraries_are_in_the_test_extra_and_mauve_is_bounded():
    runtime = declared(PYPROJECT["project"]["dependencies"])
    assert "nltk" not in runtime and "nltk" in declared(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert "<" in runtime["mauve-text"]  # its internals are used: only the versions tested
    installed = importlib.metadata.version("mauve-text")
    upper = runtime["mauve-text"].split("<")[1].split(",")[0]
    assert tuple(map(int, installed.split(".")[:2])) < tuple(map(int, upper.split(".")[:2]))


def test_py_typed_ships():
    assert (REPO / "evalharness" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["evalharness"]


def test_offline_mode_is_huggingface_hubs_own_answer_which_reads_transformers_offline_too():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("from evalharness.generation.models import hub_offline_mode\n"
            "import huggingface_hub\nprint(hub_offline_mode(), huggingface_hub.constants.HF_HUB_OFFLINE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("offline", [True, False])
def test_offline_mode_follows_huggingface_hub(offline, monkeypatch):
    from evalharness.generation.models import hub_offline_mode

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", offline)
    assert hub_offline_mode() is offline


HOLD = """import sys
from pathlib import Path
from evalharness.store import results_lock
with results_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_folder_in_use_is_refused_naming_the_process_and_a_killed_runs_lock_does_not_block(
        tiny_model_dir, corpus_jsonl, tmp_path, capsys):
    yaml_path = write_experiment(tmp_path / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[greedy]",
                                 num_prompts=2, max_new=3)
    root = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["run", str(yaml_path), "--output", str(root)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {root}: in use by another evalharness run (process {holder.pid} on ")
        assert len(err.splitlines()) == 1
        assert not (root / "manifest.json").exists()  # nothing written by the refused run
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file and its owner note stay behind
        holder.wait()
    assert (root / ".evalharness.lock.owner").exists()
    assert evalharness.run(yaml_path, output=root) == root  # the system released the dead process's lock
    assert (root / "summary.json").exists()
    assert evalharness.run(yaml_path, output=root, overwrite=True) == root  # released after each run
    assert not (root / ".evalharness.lock.owner").exists()  # a run that ended says nobody holds it
