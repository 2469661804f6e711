"""Eager decoding vs the static-cache fast path (model.compile: true), side by side in one run,
per dtype: tokens/s, ratios, and the share of continuations the two paths make identically.

Made to be run once on a lent GPU (issue 11, goal 1: fast path >= 4x the eager forward-only loop
for pure, top-k and top-p, GPT-2 Large shapes, batch 128):

    python benchmarks/gpu_fast_path.py            # --gpt2-large --device cuda --batch 128 --context 32 --new 64
    python benchmarks/gpu_fast_path.py --model tests-tiny-dir --device cpu --batch 4 --new 5   # a smoke run

Columns per dtype, alternating every repeat so machine noise hits all alike: the eager
forward-only floor (bench_decoding.forward_only), then per sampler the eager loop
(decoding.sample_loop) and the fast path (decode on a model loaded with compile=True). The first
fast-path call per shape captures the CUDA graph: it is timed apart ("first call"). End-of-text is
disabled, so every column makes batch x new tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decoding import forward_only, gpt2_large_folder, parse_sampler  # noqa: E402
from evalharness.generation.decoding import decode, row_seed, sample_loop  # noqa: E402
from evalharness.generation.models import load_model  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model folder or builtin:<name>; default GPT-2 Large shapes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--samplers", default="pure,top_k:40,top_p:0.95")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls in float32 (both paths)")
    return parser.parse_args()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(work: Callable[[], object], device: str) -> Callable[[], float]:
    def run() -> float:
        sync(device)
        start = time.perf_counter()
        work()
        sync(device)
        return time.perf_counter() - start
    return run


def identical_share(eager: list, fast: list) -> float:
    return sum(a.token_ids == b.token_ids for a, b in zip(eager, fast)) / max(1, len(eager))


def bench_dtype(folder: str, dtype: str, args) -> None:
    loaded = load_model(folder, args.device, dtype=dtype, compile=True)
    model, device, pad = loaded.model, loaded.device, loaded.pad_id
    contexts = torch.randint(0, model.config.vocab_size, (args.batch, args.context),
                             generator=torch.Generator().manual_seed(0)).tolist()
    seeds = [row_seed(0, str(i), "bench") for i in range(args.batch)]
    columns = {"forward-only": timed(lambda: forward_only(model, contexts, args.new, pad, device), device)}
    shares, first_calls = {}, {}
    for spec in [s for s in args.samplers.split(",") if s]:
        sampler = parse_sampler(spec)
        call = (contexts, sampler, args.new, None, pad, seeds, device)
        start = time.perf_counter()
        fast_out = decode(model, *call)  # builds the buffers and, on CUDA, captures the graph
        sync(device)
        first_calls[spec] = time.perf_counter() - start
        shares[spec] = identical_share(sample_loop(model, *call), fast_out)
        columns[f"{spec} eager"] = timed(lambda c=call: sample_loop(model, *c), device)
        columns[f"{spec} fast"] = timed(lambda c=call: decode(model, *c), device)
    for run in columns.values():
        run()  # warm-up
    times = {name: [] for name in columns}
    for _ in range(args.repeats):
        for name, run in columns.items():
            times[name].append(run())
    report(dtype, args, times, shares, first_calls)
    del loaded, model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def report(dtype: str, args, times: dict, shares: dict, first_calls: dict) -> None:
    tokens = args.batch * args.new
    floor = times["forward-only"]
    print(f"\n{dtype}: batch {args.batch}, context {args.context}, {args.new} new tokens, {args.repeats} repeats")
    for name, values in times.items():
        ratios = [f / v for f, v in zip(floor, values)]
        print(f"{name:>24}: {tokens / statistics.median(values):10,.0f} tokens/s   "
              f"x eager forward-only {statistics.median(ratios):6.2f}")
    for spec in shares:
        speedup = [e / f for e, f in zip(times[f"{spec} eager"], times[f"{spec} fast"])]
        print(f"{spec:>24}: fast / eager loop x{statistics.median(speedup):.2f}; identical continuations "
              f"{shares[spec]:.1%} of {args.batch}; first fast call (buffers + capture) {first_calls[spec]:.2f} s")


def main() -> None:
    args = arguments()
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    folder = args.model or gpt2_large_folder()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"model {folder}, device {device_name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, TF32 {'on' if args.tf32 else 'off'}")
    for dtype in args.dtypes.split(","):
        bench_dtype(folder, dtype, args)


if __name__ == "__main__":
    main()
