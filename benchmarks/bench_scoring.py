"""End-to-end scoring time of a default-sized experiment: every scorer over the human row and runs.

    python benchmarks/bench_scoring.py [--prompts 500] [--max-new 128] [--runs 9] [--resamples 200]
                                       [--featurizer minilm] [--no-mauve]

Synthetic records of the default experiment's shape (500 prompts, up to 128 new tokens, the
paper's 9 decoding runs plus the human row, 200 bootstrap resamples), scored the way
evalharness.experiment.scoring does it (every registered scorer with default options, MAUVE human features
cached once). Prints the time per scorer per run and the total. Texts are English-looking word
salads; token ids are word indices (a 50k-id Zipfian vocabulary), so the numbers measure the
scorers, not a model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalharness.records import HUMAN_RUN, Generation  # noqa: E402
from evalharness.scorers import SCORERS, ScoringContext  # noqa: E402

WORDS = ("the a of to and in is was for on that with as by it at from his her they this which be river city "
         "music king song film war ship game team season album church school road bridge north south early "
         "later first second great small old new long high built played wrote during after before under "
         "between around several many most only also however while").split()


def synthetic_run(run: str, prompts: int, max_new: int, rng: np.random.Generator, repeat_share: float) -> list[Generation]:
    vocab = 50257
    probs = 1.0 / np.arange(1, vocab + 1) ** 1.05
    probs /= probs.sum()
    out = []
    for i in range(prompts):
        eos = bool(rng.random() < 0.2)
        length = int(rng.integers(max_new // 2, max_new)) if eos else max_new
        ids = rng.choice(vocab, size=length, p=probs)
        if rng.random() < repeat_share:  # a degenerate loop to the end
            loop = ids[length // 2: length // 2 + int(rng.integers(2, 10))]
            ids[length // 2:] = np.resize(loop, length - length // 2)
        text = " ".join(WORDS[int(t) % len(WORDS)] for t in ids)
        token_ids = tuple(int(t) for t in ids) + ((50256,) if eos else ())
        logprobs = tuple(float(x) for x in -rng.exponential(2.5, size=len(token_ids)))
        out.append(Generation(f"{i:05d}", run, text, token_ids, len(token_ids), eos, logprobs, logprobs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--max-new", type=int, default=128)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--featurizer", default="minilm")
    parser.add_argument("--no-mauve", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    human = synthetic_run(HUMAN_RUN, args.prompts, args.max_new, rng, 0.0)
    runs = [(HUMAN_RUN, human)] + [
        (f"run{k}", synthetic_run(f"run{k}", args.prompts, args.max_new, rng, repeat_share=0.05 * k))
        for k in range(args.runs)
    ]
    names = [n for n in SCORERS.names() if not (args.no_mauve and n == "mauve")]
    scorers = {n: SCORERS.get(n)(featurizer=args.featurizer) if n == "mauve" else SCORERS.get(n)() for n in names}
    timings: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as cache:
        ctx = ScoringContext(human=human, resamples=args.resamples, seed=0, cache_dir=Path(cache))
        total_start = time.perf_counter()
        for run, gens in runs:
            for name, scorer in scorers.items():
                start = time.perf_counter()
                scorer.score(gens, ctx)
                timings[name].append(time.perf_counter() - start)
        total = time.perf_counter() - total_start

    print(f"{args.prompts} prompts x <= {args.max_new} tokens, human + {args.runs} runs, "
          f"{args.resamples} bootstrap resamples")
    print(f"{'scorer':<12} {'first run':>10} {'later runs (mean)':>18} {'all runs':>10}")
    for name, times in timings.items():
        later = np.mean(times[1:]) if len(times) > 1 else float("nan")
        print(f"{name:<12} {times[0]:>9.2f}s {later:>17.2f}s {sum(times):>9.2f}s")
    print(f"{'total':<12} {'':>10} {'':>18} {total:>9.2f}s")
    if "mauve" in timings:
        print("(mauve's first call loads the featuriser; the human row emits no MAUVE and its features are "
              "computed once, on the first model run, then reused from the cache)")


if __name__ == "__main__":
    main()
