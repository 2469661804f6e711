"""Decoding throughput, side by side in one run: a bare forward-only loop, our samplers, and
transformers' `generate`.

Columns (every one generates exactly batch x new tokens: end-of-text is disabled):
- forward-only: the floor — KV cache + argmax, eager, nothing else (no log-probs, no sampler);
- one column per sampler in --samplers, through evalharness.generation.decoding.decode;
- generate: `model.generate` with top-p 0.95 (the library's own sampling loop), unless --no-generate;
- with --beam B: beam search with B beams over batch/B prompts vs greedy over the same number
  of rows (batch), i.e. the cost per row-step of the search against the plain loop; with
  --beam-generate also the same search by transformers' `generate` (the reference).

Runs alternate (every column once per repeat, in the same order) so machine noise hits all
alike; each ratio is the median of the per-repeat ratios against forward-only.

    python benchmarks/bench_decoding.py [--model builtin:pydocs-gpt2-small] [--batch 32] [--new 64]
        [--samplers pure,top_k:40,top_p:0.95,typical:0.95,eta:0.0009,epsilon:0.0003]
        [--beam 4 [--beam-generate]] [--dtype float32|bfloat16|float16] [--compile] [--device cuda]
        [--gpt2-large]   # GPT-2 Large shapes, random weights, ../shared/data/gpt2-tokenizer
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalharness.generation.decoding import decode, left_pad, model_logits, positions, row_seed  # noqa: E402
from evalharness.generation.models import load_model  # noqa: E402
from evalharness.samplers import SAMPLERS  # noqa: E402

GPT2_TOKENIZER = ROOT.parent / "shared" / "data" / "gpt2-tokenizer"
SAMPLER_PARAMETER = {"top_k": "k", "top_p": "p", "typical": "p", "eta": "eta", "epsilon": "epsilon",
                     "min_p": "p", "temperature": "temperature"}


def gpt2_large_folder() -> str:
    """A GPT-2 Large-shaped model (36 layers, width 1280, 20 heads, 50,257 tokens) with random
    weights and the real GPT-2 tokenizer, saved to a temporary folder."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if not (GPT2_TOKENIZER / "vocab.json").is_file():
        sys.exit(f"skipped: --gpt2-large needs GPT-2's tokenizer files at {GPT2_TOKENIZER}")
    folder = Path(tempfile.mkdtemp()) / "gpt2-large-random"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=36, n_embd=1280, n_head=20))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(GPT2_TOKENIZER).save_pretrained(folder)
    return str(folder)


def pick_model(args):
    name = gpt2_large_folder() if args.gpt2_large else args.model
    kwargs = {"dtype": args.dtype}
    if args.compile:
        kwargs["compile"] = True
    try:
        return load_model(name, args.device, **kwargs)
    except TypeError:
        sys.exit("--compile: this checkout's load_model has no compile option yet")


def parse_sampler(spec: str):
    name, _, value = spec.partition(":")
    params = {SAMPLER_PARAMETER[name]: (int(value) if name == "top_k" else float(value))} if value else {}
    return SAMPLERS.get(name)(**params)


@torch.inference_mode()
def forward_only(model, contexts: list[list[int]], new: int, pad_id: int, device: str) -> None:
    """The floor any decoding loop pays: one cached forward pass and an argmax per step."""
    ids, mask = left_pad(contexts, pad_id, device)
    pos = positions(mask)
    out = model_logits(model, ids, mask, pos)
    pos = pos[:, -1:]
    for _ in range(new):
        token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        pos = pos + 1
        out = model_logits(model, token, mask, pos, out.cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:pydocs-gpt2-small")
    parser.add_argument("--gpt2-large", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="our decoding on the static-cache fast path")
    parser.add_argument("--samplers", default="pure,top_k:40,top_p:0.95,typical:0.95,eta:0.0009,epsilon:0.0003")
    parser.add_argument("--beam", type=int, default=0, help="also time beam search with this many beams")
    parser.add_argument("--beam-generate", action="store_true",
                        help="with --beam: also time the search by transformers' generate (the reference)")
    parser.add_argument("--no-generate", action="store_true")
    args = parser.parse_args()

    loaded = pick_model(args)
    model, device, pad_id = loaded.model, loaded.device, loaded.pad_id
    vocab = model.config.vocab_size
    contexts = torch.randint(0, vocab, (args.batch, args.context), generator=torch.Generator().manual_seed(0)).tolist()
    seeds = [row_seed(0, str(i), "bench") for i in range(args.batch)]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(work: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            sync()
            start = time.perf_counter()
            work()
            sync()
            return time.perf_counter() - start
        return run

    columns: dict[str, Callable[[], float]] = {
        "forward-only": timed(lambda: forward_only(model, contexts, args.new, pad_id, device))}
    for spec in [s for s in args.samplers.split(",") if s]:
        sampler = parse_sampler(spec)
        columns[spec] = timed(lambda s=sampler: decode(model, contexts, s, args.new, None, pad_id, seeds, device))
    if args.beam:
        greedy, beam = SAMPLERS.get("greedy")(), SAMPLERS.get("beam")(num_beams=args.beam)
        prompts = contexts[: max(1, args.batch // args.beam)]
        columns["greedy"] = timed(lambda: decode(model, contexts, greedy, args.new, None, pad_id, seeds, device))
        columns[f"beam {args.beam} (rows)"] = timed(
            lambda: decode(model, prompts, beam, args.new, None, pad_id, seeds, device))
        if args.beam_generate:
            columns[f"beam {args.beam} generate"] = timed(lambda: beam.decode(
                model, prompts, args.new, None, pad_id, device, search=beam.search_with_generate))
    if not args.no_generate:
        columns["generate top_p:0.95"] = timed(lambda: generate_top_p(model, contexts, args.new, pad_id, device))

    for run in columns.values():  # warm-up (and compilation, on the fast path)
        run()
    times: dict[str, list[float]] = {name: [] for name in columns}
    for _ in range(args.repeats):
        for name, run in columns.items():
            times[name].append(run())

    print(f"model {model.config.model_type}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{args.dtype}, batch {args.batch}, context {args.context}, {args.new} new tokens, "
          f"{torch.get_num_threads()} threads, device {device}{', fast path' if args.compile else ''}, "
          f"{args.repeats} alternating repeats")
    tokens = args.batch * args.new
    floor = times["forward-only"]
    for name, values in times.items():
        ratios = [f / v for f, v in zip(floor, values)]
        print(f"{name:>22}: median {statistics.median(values):7.3f} s = {tokens / statistics.median(values):9,.0f} "
              f"tokens/s   x forward-only {statistics.median(ratios):.3f} "
              f"(per repeat {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.beam:
        ratios = [b / g for b, g in zip(times[f"beam {args.beam} (rows)"], times["greedy"])]
        print(f"beam {args.beam} over {max(1, args.batch // args.beam)} prompts vs greedy over {args.batch} rows: "
              f"cost per row-step x{statistics.median(ratios):.3f} (target <= 1.3)")
        if args.beam_generate:
            ratios = [b / g for b, g in zip(times[f"beam {args.beam} generate"], times["greedy"])]
            print(f"  the same search by transformers' generate: x{statistics.median(ratios):.3f} "
                  f"(per repeat {', '.join(f'{r:.2f}' for r in ratios)})")


def generate_top_p(model, contexts, new: int, pad_id: int, device: str) -> None:
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=True, top_p=0.95, top_k=0, temperature=1.0, max_new_tokens=new,
                              min_new_tokens=new, pad_token_id=pad_id, eos_token_id=None)
    ids = torch.tensor(contexts, device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    assert out.shape[1] == ids.shape[1] + new


if __name__ == "__main__":
    main()
