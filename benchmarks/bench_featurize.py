"""MAUVE featurisation (all-MiniLM-L6-v2, CPU): today's Featurizer against the code path it replaced.

    python benchmarks/bench_featurize.py [--texts 500] [--tokens 32] [--repeats 3] [--threads N]

Texts are builtin:pydocs test documents cut to pieces of `--tokens` GPT-2 tokens (the real
tokenizer at ../shared/data/gpt2-tokenizer/ when present, else whitespace words), like the
default experiment's 32-token continuations; `--tokens 160` gives long texts. Both paths
featurise the same texts in alternating runs (old, new, old, new, ...) so that the load of a
shared machine falls on both; prints each time, the median ratio old/new, the max abs feature
difference, and the GFLOP/s the new path reaches (matrix products only, ~21 MFLOP a token).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalharness.scorers import featurize  # noqa: E402

GPT2_TOKENIZER = ROOT.parent / "shared" / "data" / "gpt2-tokenizer"


def reference_features(f: featurize.Featurizer, texts: list[str]) -> np.ndarray:
    """The featurisation before this benchmark's change, kept verbatim: one encode per text,
    sorted batches of batch_size, no_grad, all layers' hidden states, default threads."""
    import torch

    encoded = [f._encode(t) for t in texts]
    order = np.argsort([len(ids) for ids in encoded], kind="stable").tolist()
    chunks = [order[i:i + f.batch_size] for i in range(0, len(order), f.batch_size)]
    with torch.no_grad():
        parts = [reference_forward(f, [encoded[i] for i in chunk]) for chunk in chunks]
    return f.assemble(len(texts), chunks, parts)


def reference_forward(f: featurize.Featurizer, batch: list[list[int]]) -> np.ndarray:
    import torch

    lengths = torch.tensor([len(ids) for ids in batch])
    width = int(lengths.max())
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    outputs = f.model(input_ids=input_ids.to(f.device), attention_mask=mask.to(f.device),
                      output_hidden_states=True, return_dict=True)
    hidden = outputs.hidden_states[-1].float().cpu()
    weights = mask.unsqueeze(-1).float()
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def pieces(n: int, tokens: int) -> list[str]:
    """Up to n texts of `tokens` GPT-2 tokens, one per test document (its second piece when
    there is one: mid-document text, as continuations are)."""
    from evalharness.builtin.corpora import pydocs

    encode, decode = _gpt2()
    out = []
    for _, text in pydocs.documents("test"):
        ids = encode(text)
        if len(ids) >= tokens:
            start = tokens if len(ids) >= 2 * tokens else 0
            out.append(decode(ids[start:start + tokens]))
        if len(out) == n:
            break
    return out


def _gpt2():
    if (GPT2_TOKENIZER / "vocab.json").is_file():
        from transformers import GPT2TokenizerFast

        tok = GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER))
        return tok.encode, tok.decode
    print(f"(no GPT-2 tokenizer at {GPT2_TOKENIZER}: pieces of whitespace words instead)")
    return str.split, " ".join


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=32, help="GPT-2 tokens per text")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = pieces(args.texts, args.tokens)
    f = featurize.get_featurizer("minilm")
    encoded, _ = f.plan(texts)
    n_tokens = sum(map(len, encoded))
    print(f"{len(texts)} texts, {n_tokens} word pieces (mean {n_tokens / len(texts):.1f}, max "
          f"{max(map(len, encoded))}), torch threads {torch.get_num_threads()}")
    old, new = reference_features(f, texts[:8]), f(texts[:8])  # warm-up
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeats):
        for name, fn in (("old", reference_features), ("new", featurize.Featurizer.__call__)):
            start = time.perf_counter()
            out = fn(f, texts)
            times[name].append(time.perf_counter() - start)
            old, new = (out, new) if name == "old" else (old, out)
        print(f"old {times['old'][-1]:.2f} s   new {times['new'][-1]:.2f} s", flush=True)
    ratio = statistics.median(o / n for o, n in zip(times["old"], times["new"]))
    gflop = 21.2e-3 * n_tokens  # 6 layers x 1.77M weights x 2 FLOP per word piece
    print(f"median old {statistics.median(times['old']):.2f} s, new {statistics.median(times['new']):.2f} s, "
          f"ratio old/new {ratio:.2f}x (median of pairs); new at {gflop / min(times['new']):.1f} GFLOP/s "
          f"(best run), old {gflop / min(times['old']):.1f}")
    print(f"max abs feature difference {np.abs(old - new).max():.3e}")


if __name__ == "__main__":
    main()
