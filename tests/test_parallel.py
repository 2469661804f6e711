"""Data-parallel runs for real: the CLI under `torchrun` (gloo, CPU) against one process.

Every rank of torchrun runs with OMP_NUM_THREADS=1 (torchrun's default), and CPU float32 kernels
round differently with another thread count (the cached decode step, ~1e-6 in log-probabilities;
the tokens do not change). So the one-process reference runs with one thread as well: what the
tests show is that the number of *processes* changes no byte.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from evalharness.experiment.faults import KILL_ENV, SIGNAL_ENV
from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = "[greedy, pure, {name: top_p, p: 0.9}, {name: beam, num_beams: 2}, {name: contrastive, alpha: 0.6, k: 3}]"
SCORERS = "[perplexity, repetition, self_bleu, zipf, distinct, mauve]"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def environment(extra_path: Path | None = None) -> dict:
    path = os.pathsep.join(str(p) for p in (extra_path, REPO) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def command(ranks: int, *args) -> list[str]:
    run = ["-m", "evalharness", *map(str, args)]
    return [sys.executable, *run] if ranks == 1 else [*TORCHRUN, "--nproc-per-node", str(ranks), *run]


def run_cli(ranks: int, *args, extra_path: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command(ranks, *args), capture_output=True, text=True, timeout=timeout,
                          env=environment(extra_path))


def result_files(root: Path) -> dict[str, bytes]:
    """Every file whose bytes the contract covers: prompts, every run's records (generations,
    the sampler's log-probabilities of human text), summary.json."""
    paths = [root / "prompts.jsonl", root / "summary.json", *sorted(root.glob("*/*.jsonl"))]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths if p.exists()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def experiment(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    """The YAML and the uninterrupted one-process result every other run must equal."""
    folder = tmp_path_factory.mktemp("parallel")
    yaml_path = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl, SAMPLERS,
                                 scorers=SCORERS, num_prompts=10)
    reference = folder / "one"
    result = run_cli(1, "run", yaml_path, "--output", reference)
    assert result.returncode == 0, result.stderr
    return yaml_path, result_files(reference)


def test_two_ranks_write_the_bytes_of_one_process(experiment, tmp_path):
    yaml_path, reference = experiment
    out = tmp_path / "two"
    result = run_cli(2, "run", yaml_path, "--output", out)
    assert result.returncode == 0, result.stderr
    assert result_files(out) == reference
    assert len(reference) == 11  # prompts, summary, human + 5 runs, human text under 3 samplers
    assert result.stdout.count("results:") == 1  # rank 0 alone prints the table
    assert json.loads((out / "manifest.json").read_text())["ranks"] == 2
    features = list((out / "cache" / "features").rglob("*.npy"))
    assert len(features) == 6  # MAUVE features of human + 5 runs, computed by both ranks


def two_nodes(yaml_path: Path, out: Path, node1_prefix: tuple = ()) -> list[tuple[str, str]]:
    """`--nnodes 2` as on two machines (both on this one, meeting at a c10d endpoint on
    127.0.0.1), the launch of the README. The rendezvous store is this test's, on a port bound
    to 0 and read back (no free-port guess that another process could take); both nodes join it
    as clients (is_host=false). (stdout, stderr) of each node; both must succeed."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, multi_tenant=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{store.port}", "--rdzv-conf", "is_host=false",
              "--rdzv-id", "t", "-m", "evalharness", "run", str(yaml_path), "--output", str(out)]
    nodes = [subprocess.Popen([*(node1_prefix if node else ()), *launch[:3], "--node-rank", str(node), *launch[3:]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
             for node in (0, 1)]
    results = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], results[0][1] + results[1][1]
    del store
    return results


def test_two_machines_by_c10d_rendezvous_write_the_same_bytes(experiment, tmp_path):
    """Rank 0 alone writes and prints."""
    yaml_path, reference = experiment
    results = two_nodes(yaml_path, tmp_path / "nodes")
    assert result_files(tmp_path / "nodes") == reference
    assert sum(stdout.count("results:") for stdout, _ in results) == 1


def hide_folder() -> list[str] | None:
    """A prefix that runs a command in its own mount namespace with FOLDER (the first argument)
    covered by an empty tmpfs: there the files are truly not there. None where not allowed."""
    unshare = shutil.which("unshare")
    script = 'mount -t tmpfs none "$0" && exec "$@"'
    if not unshare or subprocess.run([unshare, "-m", "sh", "-c", 'mount -t tmpfs none /mnt', "x"],
                                     capture_output=True).returncode != 0:
        return None
    return [unshare, "-m", "sh", "-c", script]


def test_rank_1_on_a_machine_without_the_data_file_still_runs(experiment, tmp_path, corpus_jsonl):
    """The README: rank 0 alone reads the data source, no shared filesystem needed. Node 1 runs
    in a mount namespace where the data folder is an empty tmpfs; the files are those of one process."""
    prefix = hide_folder()
    if prefix is None:
        pytest.skip("mount namespaces (unshare -m, root) are not allowed here")
    yaml_path, reference = experiment
    data = tmp_path / "data"
    data.mkdir()
    moved = shutil.copy(corpus_jsonl, data / "docs.jsonl")
    local = tmp_path / "local.yaml"
    local.write_text(yaml_path.read_text().replace(str(corpus_jsonl), str(moved)))
    hidden = subprocess.run([*prefix, str(data), "test", "!", "-e", str(moved)], capture_output=True)
    assert hidden.returncode == 0, "the data file is still visible in the namespace"
    # c10d numbers the nodes by their agents' pids: node 1 starts second and is rank 1; were it
    # rank 0, it could not read the data and the run would fail here
    results = two_nodes(local, tmp_path / "out", node1_prefix=(*prefix, str(data)))
    assert result_files(tmp_path / "out") == reference
    assert "results:" in results[0][0] and "results:" not in results[1][0]


def records_written(root: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in root.glob("*/generations.jsonl"))


def rank_pids(torchrun: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (read from their environment)."""
    out = {}
    children = Path(f"/proc/{torchrun.pid}/task/{torchrun.pid}/children").read_text().split()
    for pid in map(int, children):
        try:
            env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if "RANK" in env:
            out[int(env["RANK"])] = pid
    return out


def kill_rank_after(ranks: int, rank: int, rounds: int, args: list) -> str:
    """Run on `ranks` ranks; `rank` SIGKILLs itself right after its `rounds`-th round of batches
    (EVALHARNESS_TEST_KILL_AFTER: the point comes from the code, not the clock). torchrun then
    stops the others and fails. Its stderr."""
    result = subprocess.run(command(ranks, *args), capture_output=True, text=True, timeout=600,
                            env={**environment(), KILL_ENV: f"round:{rounds}@{rank}"})
    assert result.returncode != 0, result.stderr
    assert "exitcode  : -9" in result.stderr, result.stderr  # torchrun's summary: the rank died of SIGKILL
    return result.stderr


def test_killed_ranks_resume_on_any_number_of_ranks(experiment, tmp_path):
    """SIGKILL rank 1 of 2 after its 4th round, resume on 3 ranks and SIGKILL rank 2 after its
    3rd, finish on 1 process: nothing lost, nothing duplicated, the bytes of the uninterrupted run."""
    yaml_path, reference = experiment
    out = tmp_path / "killed"
    args = ["run", yaml_path, "--output", out]
    kill_rank_after(2, 1, 4, args)  # rounds 1-2: human; 3-4: greedy (10 prompts: batches of 4, 4, 2)
    first = records_written(out)
    assert first in (18, 20)  # human, and greedy up to round 3 or 4 (rank 0 may append round 4 first)
    kill_rank_after(3, 2, 3, args)  # one round per file now: at least one more whole file is written
    assert records_written(out) >= first + 10
    result = run_cli(1, *args)
    assert result.returncode == 0, result.stderr
    assert result_files(out) == reference


def inject(tmp_path: Path, code: str) -> Path:
    """A sitecustomize module that plants a fault in one rank of the real program."""
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return folder


OOM_ON_LOAD = """
import os
if os.environ.get("RANK") == "1":
    import torch
    import evalharness.generation.models as models
    def load_model(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    models.load_model = load_model
"""

OOM_MID_RUN = """
import os
if os.environ.get("RANK") == "1":
    import torch
    import evalharness.generation.decoding as decoding
    real, calls = decoding.decode, []
    def decode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(*args, **kwargs)
    decoding.decode = decode
"""


def test_a_rank_that_cannot_load_the_model_stops_all_with_one_line(experiment, tmp_path):
    yaml_path, _ = experiment
    out = tmp_path / "oom"
    result = run_cli(2, "run", yaml_path, "--output", out, extra_path=inject(tmp_path, OOM_ON_LOAD))
    assert result.returncode != 0
    assert error_lines(result.stderr) == [
        "error: rank 1: out of memory: CUDA out of memory. Tried to allocate 20.00 GiB (injected)"]
    assert "exitcode  : 1" in result.stderr  # a crash, not a user error
    assert not out.exists()  # failed before the results folder was touched


def test_ranks_that_loaded_different_weights_are_refused(experiment, tmp_path):
    """As when two machines hold different files under the same model path."""
    from helpers import build_tiny_model

    yaml_path, _ = experiment
    other = build_tiny_model(tmp_path / "other", seed=1)
    swap = (f"import os\nif os.environ.get('RANK') == '1':\n    import evalharness.generation.models as models\n"
            f"    real = models.load_model\n    models.load_model = lambda name, *a, **k: real({str(other)!r}, *a, **k)\n")
    result = run_cli(2, "run", yaml_path, "--output", tmp_path / "out", extra_path=inject(tmp_path, swap))
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: model.name: rank 1 loaded other weights than rank 0"), result.stderr
    assert "exitcode  : 2" in result.stderr
    assert not (tmp_path / "out").exists()


def test_out_of_memory_mid_run_stops_all_ranks_with_whole_records_only(experiment, tmp_path):
    yaml_path, reference = experiment
    out = tmp_path / "oom-mid"
    result = run_cli(2, "run", yaml_path, "--output", out, extra_path=inject(tmp_path, OOM_MID_RUN))
    assert result.returncode != 0
    assert error_lines(result.stderr) == [
        "error: rank 1: out of memory: CUDA out of memory. Tried to allocate 2.00 GiB (injected)"]
    written = result_files(out)
    assert 0 < len(written) < len(reference)
    for name, data in written.items():  # a prefix of the uninterrupted run's file, whole lines
        assert reference[name].startswith(data) and data.endswith(b"\n"), name
    resumed = run_cli(2, "run", yaml_path, "--output", out)
    assert resumed.returncode == 0, resumed.stderr
    assert result_files(out) == reference


def test_a_hung_rank_is_named_after_the_timeout(experiment, tmp_path):
    """Rank 1 freezes itself for real (SIGSTOP) right after its second round: rank 0 gives up
    after --timeout and names it. The test ends as soon as that line appears (the frozen rank
    would otherwise keep torchrun waiting)."""
    yaml_path, _ = experiment
    args = ["run", yaml_path, "--output", tmp_path / "hung", "--timeout", "4"]
    env = {**environment(), KILL_ENV: "round:2@1", SIGNAL_ENV: "SIGSTOP"}
    process = subprocess.Popen(command(2, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr] + [lines.put(None)],
                     daemon=True).start()
    seen = []
    try:
        while not (seen and seen[-1] is not None and seen[-1].startswith("error:")):
            seen.append(lines.get(timeout=300))
            assert seen[-1] is not None, "torchrun ended without an error line:\n" + "".join(seen[:-1])
    finally:
        for pid in rank_pids(process).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=120)
    assert seen[-1].rstrip("\n") == ("error: rank 1 did not answer within 4 s (hung or died); "
                                     "raise --timeout if one batch can take that long"), "".join(seen)
    assert process.returncode != 0


def test_user_errors_under_torchrun_keep_status_2_and_print_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {name: builtin:pydocs-gpt2-small}\ndata: {source: nowhere.jsonl}\nsamplers: [pure]\n")
    result = run_cli(2, "run", bad, "--output", tmp_path / "out")
    assert error_lines(result.stderr) == ["error: data.source: no such file 'nowhere.jsonl'"], result.stderr
    assert "exitcode  : 2" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_oracle_shares_its_forward_passes_and_writes_the_same_tokens(experiment, tmp_path):
    yaml_path, _ = experiment
    outs = {}
    for ranks in (1, 2):
        outs[ranks] = tmp_path / f"oracle{ranks}"
        result = run_cli(ranks, "oracle", yaml_path, "--output", outs[ranks], "--context-tokens", "6",
                         "--num-tokens", "400", "--batch-size", "16")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("results:") == 1
    tokens = [(outs[r] / "oracle_tokens.jsonl").read_bytes() for r in (1, 2)]
    assert tokens[0] == tokens[1] and len(tokens[0].splitlines()) == 400
    summaries = [json.loads((outs[r] / "oracle.json").read_text()) for r in (1, 2)]
    assert [s["k"] for s in summaries] == [summaries[0]["k"]] * 2
    assert [s["coverage"] for s in summaries] == [summaries[0]["coverage"]] * 2
