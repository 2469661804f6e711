"""Data-parallel scaling: tokens/s of one process vs N torchrun ranks on the same work.

The work is what `run` does for one sampling run: the fixed batches of P prompts (random
32-token contexts, end-of-text disabled so every prompt gets exactly --new tokens), shared out
by evalharness.experiment.parallel.for_each_share, every record gathered to rank 0 (which keeps them in
memory instead of writing a file). The timer covers the generation loop only: model loading and
torchrun's start-up are reported apart. Configurations alternate (1 process, N ranks, 1 process,
...) so machine noise hits both alike.

    python benchmarks/bench_parallel.py [--ranks 2] [--threads-per-rank 1] [--prompts 256] [--new 64]
        [--batch 32] [--model builtin:pydocs-gpt2-small] [--device cpu|cuda] [--repeats 3]

On a CPU, N ranks split the cores: with 2 cores, 1 process x 2 threads vs 2 ranks x 1 thread is the
fair comparison (and 1 process x 1 thread shows what one core does). On GPUs each rank takes
its own GPU (cuda:LOCAL_RANK).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): generate, time, and on rank 0 print one JSON line."""
    import torch

    from evalharness.experiment import parallel
    from evalharness.generation.decoding import decode, row_seed
    from evalharness.generation.models import load_model
    from evalharness.samplers import SAMPLERS

    started = time.perf_counter()
    world = parallel.start(args.device)
    loaded = load_model(args.model, parallel.rank_device(args.device, world))
    loading = time.perf_counter() - started
    g = torch.Generator().manual_seed(0)
    contexts = torch.randint(0, loaded.model.config.vocab_size, (args.prompts, 32), generator=g).tolist()
    tasks = [list(range(i, min(i + args.batch, args.prompts))) for i in range(0, args.prompts, args.batch)]
    sampler = SAMPLERS.get("top_p")(p=0.95)
    kept: list = []

    def compute(rows: list[int]) -> list[list[int]]:
        seeds = [row_seed(0, str(i), "bench") for i in rows]
        outs = decode(loaded.model, [contexts[i] for i in rows], sampler, args.new, None, loaded.pad_id,
                      seeds, loaded.device)
        return [o.token_ids for o in outs]

    world.gather_to_main(lambda: None)  # all ranks loaded: start the clock together
    start = time.perf_counter()
    parallel.for_each_share(world, tasks, compute, lambda task, rows: kept.extend(rows))
    elapsed = time.perf_counter() - start
    if world.is_main:
        assert sum(len(r) for r in kept) == args.prompts * args.new
        print(json.dumps({"ranks": world.size, "threads": torch.get_num_threads(), "seconds": elapsed,
                          "loading": loading, "tokens": args.prompts * args.new, "device": loaded.device}))
    world.shutdown()


def launch(args: argparse.Namespace, ranks: int, threads: int) -> dict:
    me = [str(Path(__file__).resolve()), "--worker", "--model", args.model, "--prompts", str(args.prompts),
          "--new", str(args.new), "--batch", str(args.batch), "--device", args.device]
    command = ([sys.executable, *me] if ranks == 1 else
               [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), *me])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    record = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    return record | {"wall": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="builtin:pydocs-gpt2-small")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads-per-rank", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    total_threads = args.ranks * args.threads_per_rank
    configs = [("1 process", 1, args.threads_per_rank), ("1 process, all threads", 1, total_threads),
               (f"{args.ranks} ranks", args.ranks, args.threads_per_rank)]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for _ in range(args.repeats):
        for name, ranks, threads in configs:
            results[name].append(launch(args, ranks, threads))
    print(f"model {args.model}, {args.prompts} prompts x {args.new} new tokens, batch {args.batch}, top-p 0.95, "
          f"device {args.device}, {os.cpu_count()} CPU cores, {args.repeats} alternating repeats")
    rates = {}
    for name, ranks, threads in configs:
        seconds = statistics.median(r["seconds"] for r in results[name])
        rates[name] = results[name][0]["tokens"] / seconds
        print(f"  {name:<22} {ranks} x {threads} thread(s): generation {seconds:7.2f} s = {rates[name]:8,.0f} tokens/s"
              f"  (model load {statistics.median(r['loading'] for r in results[name]):.1f} s, "
              f"process wall {statistics.median(r['wall'] for r in results[name]):.1f} s)")
    speedup = rates[f"{args.ranks} ranks"] / rates["1 process"]
    print(f"  {args.ranks} ranks vs 1 process at {args.threads_per_rank} thread(s) each: {speedup:.2f}x = scaling "
          f"efficiency {speedup / args.ranks:.0%}; vs 1 process using all {total_threads} threads: "
          f"{rates[f'{args.ranks} ranks'] / rates['1 process, all threads']:.2f}x")


if __name__ == "__main__":
    main()
