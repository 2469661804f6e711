"""How close the oracle analysis runs to forward-pass speed, measured side by side in one run.

    python benchmarks/bench_oracle.py [--model builtin:pydocs-gpt2-small] [--source builtin:pydocs]
                                      [--tokens 2000] [--context 15] [--batch-size 64] [--naive 200]
                                      [--threads N] [--repeats 3]

On the same windows (window mode, L = --context) it times:
  oracle      evalharness.oracle.score.score_batches: forward passes + rank / p / mass above
  forward     the same forward passes only (last position's logits, as the oracle asks for)
  full-head   the same forward passes computing logits at every position (no logits_to_keep)
  naive       one forward pass per token, batch 1, full logits, numpy argsort (on --naive tokens)
and prints tokens per second and ratios to `forward`. Best of --repeats for each. The model
defaults to the builtin one when it exists, else a random 2-layer GPT-2 built in a temp folder.
Timings on a shared machine are noisy: compare only numbers from the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalharness.experiment.config import DataConfig  # noqa: E402
from evalharness.experiment.data import read_documents  # noqa: E402
from evalharness.generation.models import BUILTIN_MODELS, load_model  # noqa: E402
from evalharness.oracle.plan import OracleSettings, plan_documents, window_batches  # noqa: E402
from evalharness.oracle.score import score_batches  # noqa: E402


def default_model() -> str:
    if (BUILTIN_MODELS / "pydocs-gpt2-small" / "config.json").is_file():
        return "builtin:pydocs-gpt2-small"
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import build_tiny_model
    return str(build_tiny_model(Path(tempfile.mkdtemp(prefix="bench-oracle-")) / "tiny"))


def best_rate(fn, tokens: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return tokens / best


def naive_rate(model, plan, context: int, limit: int) -> float:
    jobs = [(d, i) for d in plan.docs for i in range(d.start, d.stop)][:limit]
    started = time.perf_counter()
    with torch.inference_mode():
        for doc, i in jobs:
            logits = model(input_ids=torch.tensor(doc.ids[i - context:i])[None]).logits[0, -1].numpy()
            order = np.argsort(-logits, kind="stable")
            probs = np.exp(logits.astype(np.float64) - logits.max())
            probs /= probs.sum()
            rank = int(np.flatnonzero(logits[order] == logits[doc.ids[i]])[0])
            _ = rank + 1, probs[order[:rank + 1]].sum()
    return len(jobs) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--source", default="builtin:pydocs")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--context", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--naive", type=int, default=200, help="tokens for the naive per-token loop")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.model or default_model()
    loaded = load_model(name, "cpu")
    settings = OracleSettings(args.context, "window", args.tokens, args.batch_size, "cpu")
    plan = plan_documents(read_documents(DataConfig(source=args.source)), loaded.tokenizer, 0, settings,
                          loaded.max_positions)
    n, model = plan.num_tokens, loaded.model
    batches = list(window_batches(plan, args.context, args.batch_size))

    def oracle():
        for _ in score_batches(model, plan, settings, loaded.pad_id):
            pass

    def forward(keep_last: bool):
        with torch.inference_mode():
            for batch in batches:
                model(input_ids=batch.inputs, use_cache=False, **({"logits_to_keep": 1} if keep_last else {}))

    oracle()  # warm up (first calls pay one-off costs)
    rates = {"forward": best_rate(lambda: forward(True), n, args.repeats),
             "oracle": best_rate(oracle, n, args.repeats),
             "full-head": best_rate(lambda: forward(False), n, args.repeats),
             "naive": naive_rate(model, plan, args.context, args.naive)}
    print(f"model {name}, {n} tokens of {args.source}, L={args.context}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads")
    for label, rate in rates.items():
        print(f"  {label:<10} {rate:10.1f} tokens/s   {rate / rates['forward']:6.3f} x forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
