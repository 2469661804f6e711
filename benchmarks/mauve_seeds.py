"""MAUVE's k-means seed variance and the cost of averaging over seeds, from a results folder's
cached features (nothing is generated or featurised again).

- Seed variance: for every run, MAUVE (our quantize + mauve_from_labels, equal to mauve-text's
  compute_mauve at the same seed) at seeds 25, 26, ..., 25 + --seeds - 1 on all prompts: mean,
  sd (ddof 1), min, max.
- Resolution: the same on --subsets random subsets of --sizes prompts (the same prompts for
  the human and the run side, drawn without replacement, seed 0): the mean over subsets of the
  seed sd, per run and size.
- Cost (--timing-repeats R): the mauve scorer's score_features (quantisation + 200-resample
  interval, as `run` computes it) over every run with seeds: 1 and seeds: 5, alternating within
  each repeat so machine noise hits both alike; totals per repeat and their medians.

    python benchmarks/mauve_seeds.py RESULTS_DIR [--seeds 10] [--sizes 125,250] [--subsets 5]
        [--runs pure,top_k-k=640] [--timing-repeats 3] [--resamples 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from evalharness.records import HUMAN_RUN
from evalharness.scorers.featurize import texts_digest
from evalharness.scorers.mauve import Mauve, auto_buckets, mauve_from_labels, quantize
from evalharness.store import ResultsDir

FIRST_SEED = 25


def run_features(root: Path, runs: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(human features, run -> features), rows in prompt order, from cache/features/*/; every
    run of summary.json when `runs` is empty."""
    store = ResultsDir(root)
    prompts = store.read_prompts()
    runs = runs or [row["run"] for row in json.loads((root / "summary.json").read_text())][1:]
    out = {}
    for run in [HUMAN_RUN, *runs]:
        by_id = store.read_generations(run)
        digest = texts_digest([by_id[p.prompt_id].text for p in prompts])
        found = sorted((root / "cache" / "features").glob(f"*/{run}-{digest}.npy"))
        if not found:
            sys.exit(f"{root}: no cached features for {run}; run the experiment (with mauve) first")
        out[run] = np.load(found[0])
    return out.pop(HUMAN_RUN), out


def seed_values(p: np.ndarray, q: np.ndarray, seeds: int) -> list[float]:
    buckets = auto_buckets(len(p), len(q))
    return [mauve_from_labels(*quantize(p, q, buckets, seed), buckets)["mauve"]
            for seed in range(FIRST_SEED, FIRST_SEED + seeds)]


def variance_table(human, runs, seeds, sizes, subsets) -> None:
    print(f"| run | mean of seeds {FIRST_SEED}-{FIRST_SEED + seeds - 1} | sd | min-max | "
          + " | ".join(f"sd at {n} prompts (mean of {subsets})" for n in sizes) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(sizes))
    rng = np.random.default_rng(0)
    for run, q in runs.items():
        values = seed_values(human, q, seeds)
        cells = [f"{np.mean(values):.3f}", f"{np.std(values, ddof=1):.3f}", f"{min(values):.3f}-{max(values):.3f}"]
        for n in sizes:
            sds = []
            for _ in range(subsets):
                idx = rng.choice(len(q), size=n, replace=False)
                sds.append(float(np.std(seed_values(human[idx], q[idx], seeds), ddof=1)))
            cells.append(f"{np.mean(sds):.3f}")
        print(f"| {run} | " + " | ".join(cells) + " |", flush=True)


def timing(human, runs, repeats: int, resamples: int) -> None:
    totals: dict[int, list[float]] = {1: [], 5: []}
    Mauve(seeds=1).score_features(human, next(iter(runs.values())), resamples, 0)  # warm-up: lazy imports
    for repeat in range(repeats):
        for seeds in ((1, 5) if repeat % 2 == 0 else (5, 1)):
            scorer = Mauve(seeds=seeds)
            start = time.perf_counter()
            for q in runs.values():
                scorer.score_features(human, q, resamples, 0)
            totals[seeds].append(time.perf_counter() - start)
        print(f"repeat {repeat}: seeds 1 {totals[1][-1]:.1f} s, seeds 5 {totals[5][-1]:.1f} s", flush=True)
    one, five = statistics.median(totals[1]), statistics.median(totals[5])
    print(f"median over {repeats} repeats, {len(runs)} runs, {resamples} resamples: seeds 1 {one:.1f} s, "
          f"seeds 5 {five:.1f} s, extra {five - one:.1f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="125,250")
    parser.add_argument("--subsets", type=int, default=5)
    parser.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--timing-repeats", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--no-variance", action="store_true")
    args = parser.parse_args(argv)
    human, runs = run_features(args.results, [run for run in args.runs.split(",") if run])
    if not args.no_variance:
        variance_table(human, runs, args.seeds, [int(n) for n in args.sizes.split(",") if n], args.subsets)
    if args.timing_repeats:
        timing(human, runs, args.timing_repeats, args.resamples)


if __name__ == "__main__":
    main()
