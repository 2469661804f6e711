"""Self-BLEU: evalharness (all hypotheses at once) vs NLTK's sentence_bleu once per hypothesis.

    python benchmarks/bench_self_bleu.py [--n 1000] [--min-len 100] [--max-len 200]
                                         [--nltk-hypotheses 30 | --nltk-all]

Synthetic generations: Zipfian token ids (exponent 1.1 over a 50,257-id vocabulary), one in ten
ending in a repetition loop, one in fifty an exact duplicate of another. Both methods run side by
side in this one process on the same texts. Calling NLTK for all hypotheses takes many minutes,
so by default it is timed on a random subset of hypotheses (each against the full set of other
generations, exactly as in the full loop) and its per-hypothesis time is extrapolated to all
hypotheses; --nltk-all runs the whole loop instead.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalharness.scorers.self_bleu import self_bleu_scores  # noqa: E402


def synthetic_generations(n: int, min_len: int, max_len: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    vocab = 50257
    probs = 1.0 / np.arange(1, vocab + 1) ** 1.1
    probs /= probs.sum()
    texts = []
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        ids = rng.choice(vocab, size=length, p=probs)
        if i % 10 == 0:  # a degenerate ending: a short phrase looping to the end
            loop = ids[length // 2: length // 2 + int(rng.integers(2, 8))]
            ids[length // 2:] = np.resize(loop, length - length // 2)
        texts.append([int(x) for x in ids])
    for i in range(0, n - 1, 50):
        texts[i + 1] = list(texts[i])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--min-len", type=int, default=100)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--nltk-hypotheses", type=int, default=30)
    parser.add_argument("--nltk-all", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts = synthetic_generations(args.n, args.min_len, args.max_len, args.seed)
    lengths = [len(t) for t in texts]
    print(f"{args.n} generations, {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.1f}), "
          f"BLEU-4, method1 smoothing, each hypothesis vs all {args.n - 1} other generations")

    start = time.perf_counter()
    ours = self_bleu_scores(texts, [4])[4]
    ours_time = time.perf_counter() - start
    print(f"evalharness: {ours_time:.3f} s for all {args.n} hypotheses  (self_bleu = {ours.mean():.6f})")

    if args.nltk_all:
        hyps = list(range(args.n))
    else:
        hyps = sorted(random.Random(args.seed).sample(range(args.n), min(args.nltk_hypotheses, args.n)))
    smoothing = SmoothingFunction().method1
    start = time.perf_counter()
    reference = [
        sentence_bleu(texts[:h] + texts[h + 1:], texts[h], weights=(0.25,) * 4, smoothing_function=smoothing)
        for h in hyps
    ]
    nltk_time = time.perf_counter() - start
    per_hyp = nltk_time / len(hyps)
    nltk_total = per_hyp * args.n
    how = "measured" if args.nltk_all else (
        f"extrapolated: measured {nltk_time:.2f} s on {len(hyps)} random hypotheses "
        f"(each vs the full reference set), {per_hyp:.3f} s per hypothesis x {args.n}")
    print(f"nltk loop:   {nltk_total:.1f} s for all {args.n} hypotheses ({how})")
    diff = float(np.max(np.abs(np.asarray(reference) - ours[hyps])))
    print(f"speed ratio (nltk / evalharness): {nltk_total / ours_time:,.0f}x")
    print(f"max |evalharness - nltk| over the {len(hyps)} hypotheses NLTK scored: {diff:.3g}")


if __name__ == "__main__":
    main()
