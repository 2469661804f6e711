"""On a CUDA machine: does the decoding contract hold there too?

For every sampler: batch 1 vs batch 16 on CUDA (same tokens?), and CUDA vs CPU (same tokens?),
on 16 held-out builtin:pydocs contexts, 32 new tokens. Prints the share of identical
continuations and the largest log-probability difference. Not a test: GPU kernels differ by
batch shape, so identity there is measured, not promised (see README, determinism guarantee).

    python benchmarks/check_cuda.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalharness.experiment.config import DataConfig  # noqa: E402
from evalharness.experiment.data import build_prompts, read_documents  # noqa: E402
from evalharness.generation.decoding import decode, row_seed  # noqa: E402
from evalharness.generation.models import load_model  # noqa: E402
from evalharness.samplers import SAMPLERS  # noqa: E402

GRID = [("greedy", {}), ("beam", {"num_beams": 4}), ("pure", {}), ("top_k", {"k": 40}), ("top_p", {"p": 0.95}),
        ("typical", {"p": 0.95}), ("eta", {"eta": 0.0009}), ("min_p", {"p": 0.1}), ("contrastive", {"alpha": 0.6, "k": 4})]


def run(loaded, sampler, contexts, batch):
    out = []
    for start in range(0, len(contexts), batch):
        chunk = contexts[start:start + batch]
        seeds = [row_seed(0, f"{start + i:05d}", "cuda-check") for i in range(len(chunk))]
        out += decode(loaded.model, chunk, sampler, 32, loaded.eos_id, loaded.pad_id, seeds, loaded.device)
    return out


def compare(a, b) -> str:
    same = sum(x.token_ids == y.token_ids for x, y in zip(a, b))
    diffs = [abs(p - q) for x, y in zip(a, b) if x.token_ids == y.token_ids
             for p, q in zip(x.logprobs_model, y.logprobs_model)]
    return f"{same}/{len(a)} identical, max |dlogp| {max(diffs) if diffs else float('nan'):.2e}"


def main() -> None:
    cpu = load_model("builtin:pydocs-gpt2-small", "cpu")
    gpu = load_model("builtin:pydocs-gpt2-small", "cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
          f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    cfg = DataConfig(source="builtin:pydocs", num_prompts=16, context_tokens=32, max_new_tokens=32)
    prompts = build_prompts(read_documents(cfg), cpu.tokenizer, cfg, 0, cpu.eos_id)
    contexts = [list(p.context_ids) for p in prompts]
    for name, params in GRID:
        sampler = SAMPLERS.get(name)(**params)
        one, sixteen = run(gpu, sampler, contexts, 1), run(gpu, sampler, contexts, 16)
        on_cpu = run(cpu, sampler, contexts, 16)
        print(f"{name:<12} cuda batch 1 vs 16: {compare(one, sixteen)};  cuda vs cpu: {compare(sixteen, on_cpu)}")
    print("numpy", np.__version__)


if __name__ == "__main__":
    main()
