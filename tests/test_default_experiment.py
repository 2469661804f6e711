"""The README's first promise: the default experiment runs offline. Its own YAML, unchanged,
through the CLI with the network cut (a new network namespace, `unshare -n`, where this machine
allows it; else the Hugging Face libraries told to stay offline), on 2 prompts."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "experiments" / "topk_vs_topp.yaml"
COMMITTED = REPO / "results" / "topk_vs_topp" / "summary.json"


def network_cut() -> list[str]:
    """`unshare -n` (no interface but loopback) where it works here, else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def test_the_default_experiment_runs_offline_and_fetches_nothing(tmp_path):
    hub_cache = tmp_path / "hf-home"
    hub_cache.mkdir()
    prefix = network_cut()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(hub_cache), "OMP_NUM_THREADS": "1"}
    if not prefix:  # no namespace here: at least forbid the libraries any download
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = tmp_path / "out"
    result = subprocess.run([*prefix, sys.executable, "-m", "evalharness", "run", str(YAML), "--limit", "2",
                             "--output", str(out), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "summary.json").read_text())
    committed = json.loads(COMMITTED.read_text())
    # the same rows and columns as the committed 500-prompt run of the same YAML
    assert [row["run"] for row in rows] == [row["run"] for row in committed]
    assert [sorted(row["metrics"]) for row in rows] == [sorted(row["metrics"]) for row in committed]
    assert len(rows) == 14 and all(0 <= row["metrics"]["mauve"] <= 1 for row in rows[1:])  # MAUVE on MiniLM, offline
    for run in [row["run"] for row in rows]:
        assert len((out / run / "generations.jsonl").read_text().splitlines()) == 2
    assert list(hub_cache.rglob("*")) == []  # nothing downloaded, nothing cached from a hub
