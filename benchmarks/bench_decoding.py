"""Decoding throughput: the harness's loop vs a bare `model.generate`, side by side in one run.

Same model, prompts, batch size and sampler (top-p 0.95, nothing else). End-of-text is disabled
on both sides so both generate exactly batch * max_new_tokens tokens. Runs alternate
(ours, generate, ours, ...) so machine noise hits both alike; the median ratio is printed.

    python benchmarks/bench_decoding.py [--model builtin:pydocs-gpt2-small] [--batch 32] [--new 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalharness.decoding import decode, row_seed  # noqa: E402
from evalharness.models import load_model  # noqa: E402
from evalharness.samplers import SAMPLERS  # noqa: E402


def pick_model(name: str | None, device: str):
    if name:
        return load_model(name, device)
    try:
        return load_model("builtin:pydocs-gpt2-small", device)
    except Exception:  # the builtin model is not there: a random GPT-2 of similar size
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from helpers import build_tiny_model
        import tempfile
        return load_model(str(build_tiny_model(Path(tempfile.mkdtemp()) / "m")), device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loaded = pick_model(args.model, args.device)
    g = torch.Generator().manual_seed(0)
    vocab = loaded.model.config.vocab_size
    contexts = torch.randint(0, vocab, (args.batch, args.context), generator=g).to(loaded.device)
    sampler = SAMPLERS.get("top_p")(p=0.95)

    def ours() -> float:
        seeds = [row_seed(0, str(i), "bench") for i in range(args.batch)]
        start = time.perf_counter()
        decode(loaded.model, contexts.tolist(), sampler, args.new, None, loaded.pad_id, seeds, loaded.device)
        sync()
        return time.perf_counter() - start

    def bare() -> float:
        from transformers import GenerationConfig
        config = GenerationConfig(do_sample=True, top_p=0.95, top_k=0, temperature=1.0, max_new_tokens=args.new,
                                  min_new_tokens=args.new, pad_token_id=loaded.pad_id, eos_token_id=None)
        start = time.perf_counter()
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=contexts, attention_mask=torch.ones_like(contexts),
                                        generation_config=config)
        sync()
        elapsed = time.perf_counter() - start
        assert out.shape[1] == args.context + args.new
        return elapsed

    def sync() -> None:
        if loaded.device.startswith("cuda"):
            torch.cuda.synchronize()

    ours(), bare()  # warm-up
    times = {"ours": [], "generate": []}
    for _ in range(args.repeats):
        times["ours"].append(ours())
        times["generate"].append(bare())
    tokens = args.batch * args.new
    ratios = [g / o for o, g in zip(times["ours"], times["generate"])]
    print(f"model {loaded.model.config.model_type}, {sum(p.numel() for p in loaded.model.parameters()) / 1e6:.1f}M "
          f"params, batch {args.batch}, context {args.context}, {args.new} new tokens, top-p 0.95, "
          f"{torch.get_num_threads()} threads, device {loaded.device}")
    for name, values in times.items():
        print(f"{name:>9}: median {statistics.median(values):.3f} s  = {tokens / statistics.median(values):,.0f} tokens/s")
    print(f"throughput ratio ours/generate: median {statistics.median(ratios):.3f} "
          f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)}); target >= 0.9")


if __name__ == "__main__":
    main()
