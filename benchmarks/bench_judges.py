"""Cost of the judge scorers: seconds per 1,000 texts, on the texts of a results folder.

    python benchmarks/bench_judges.py RESULTS_DIR [--judge builtin:pydocs-gpt2-small] [--device cpu]
                                      [--batch-size 8] [--resamples 200]

Scores every run of RESULTS_DIR (human row included) with judge_perplexity, coherence and
judge_typicality, each from a cold cache (a fresh temporary cache folder per scorer, so nothing
computed by `run` is reused; contexts' embeddings are computed once per scorer, as in a run),
after the judge and the featuriser are loaded (load time printed apart). Prints wall-clock and
CPU seconds per 1,000 texts for each scorer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalharness.records import HUMAN_RUN  # noqa: E402
from evalharness.scorers import ScoringContext  # noqa: E402
from evalharness.scorers.coherence import Coherence  # noqa: E402
from evalharness.scorers.judge_perplexity import JudgePerplexity  # noqa: E402
from evalharness.scorers.judge_typicality import JudgeTypicality  # noqa: E402
from evalharness.scorers import judge  # noqa: E402
from evalharness.store import ResultsDir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--judge", default="builtin:pydocs-gpt2-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()

    store = ResultsDir(Path(args.results))
    prompts = store.read_prompts()
    runs = [HUMAN_RUN] + sorted(p.parent.name for p in store.root.glob("*/generations.jsonl")
                                if p.parent.name != HUMAN_RUN)
    texts = {run: [store.read_generations(run)[p.prompt_id] for p in prompts] for run in runs}
    n = sum(len(t) for t in texts.values())
    scorers = {"judge_perplexity": JudgePerplexity(model=args.judge, batch_size=args.batch_size),
               "coherence": Coherence(),
               "judge_typicality": JudgeTypicality(model=args.judge, batch_size=args.batch_size)}
    start = time.perf_counter()
    judge.load_judge(args.judge, args.device, "float32", "bench")
    scorers["coherence"].load_featurizer("", args.device)
    print(f"loading the judge and the featuriser: {time.perf_counter() - start:.1f} s (not counted below)")
    print(f"{len(runs)} runs x {len(prompts)} prompts = {n} texts, {args.resamples} bootstrap resamples")
    for name, scorer in scorers.items():
        with tempfile.TemporaryDirectory() as cache:
            ctx = ScoringContext(human=texts[HUMAN_RUN], resamples=args.resamples, seed=0, cache_dir=Path(cache),
                                 device=args.device, runs=tuple(runs),
                                 context_texts=[p.context_text for p in prompts])
            wall, cpu = time.perf_counter(), time.process_time()
            for run in runs:
                scorer.score(texts[run], ctx)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name:<18} {1000 * wall / n:8.1f} s wall, {1000 * cpu / n:8.1f} s CPU per 1,000 texts")


if __name__ == "__main__":
    main()
