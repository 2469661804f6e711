"""Small builders shared by tests: a tiny GPT-2 + tokenizer, a synthetic corpus, YAML files."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("the a of to and in is was for on that with as by it at from his her they this which be "
         "river city music king song film war ship game team season album church school road bridge "
         "north south early later first second great small old new long high built played wrote "
         "during after before under between around several many most only also however while").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
    return " ".join(words).capitalize() + "."


def synthetic_documents(n: int, seed: int = 0, sentences: tuple[int, int] = (8, 20)) -> list[str]:
    """English-looking documents made up inside the test (never real data)."""
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(rng.randint(*sentences))) for _ in range(n)]


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", field: t}) + "\n" for i, t in enumerate(texts)))
    return path


def build_tiny_model(folder: Path, seed: int = 0, n_positions: int = 128, generation_defaults: dict | None = None) -> Path:
    """A random 2-layer GPT-2 with a byte-level BPE tokenizer trained on synthetic text."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(synthetic_documents(200, seed=1), vocab_size=400, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos, eos_token_id=eos, initializer_range=0.2)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    if generation_defaults:
        GenerationConfig(**generation_defaults).save_pretrained(folder)
    return folder


def write_experiment(path: Path, model: Path, data: Path, samplers: str, extra: str = "",
                     num_prompts: int = 6, context: int = 8, max_new: int = 12, scorers: str = "[length]") -> Path:
    path.write_text(f"""name: tiny
seed: 0
model: {{name: {model}, device: cpu, batch_size: 4}}
data: {{source: {data}, num_prompts: {num_prompts}, context_tokens: {context}, max_new_tokens: {max_new}}}
samplers: {samplers}
scorers: {scorers}
bootstrap: {{resamples: 20}}
{extra}""")
    return path


def padded_contexts(loaded, n: int = 16) -> list[list[int]]:
    """Contexts of different lengths, so batching needs padding."""
    text = "The river city was built during the war. Her song played in the old church school. " * 3
    ids = loaded.tokenizer(text)["input_ids"]
    return [ids[: 5 + 3 * i] for i in range(n)]


def decode_batches(loaded, sampler, ctxs, batch: int, seed: int = 0, max_new: int = 15) -> list:
    """decode() over ctxs in batches of `batch`; prompt i is seeded as prompt f"{i:05d}" of run "r"."""
    from evalharness.generation.decoding import decode, row_seed

    out = []
    for start in range(0, len(ctxs), batch):
        chunk = ctxs[start:start + batch]
        seeds = [row_seed(seed, f"{start + i:05d}", "r") for i in range(len(chunk))]
        out += decode(loaded.model, chunk, sampler, max_new, loaded.eos_id, loaded.pad_id, seeds, "cpu")
    return out


def prose_chunks(n: int, words: int = 40, offset: int = 0) -> list[str]:
    """English prose that every Python carries (pydoc's help topics), read at test time and cut
    into n consecutive chunks of `words` words, starting at chunk `offset`."""
    from pydoc_data.topics import topics

    tokens = [w for key in sorted(topics) for w in topics[key].split()]
    if (offset + n) * words > len(tokens):
        raise ValueError(f"pydoc topics hold only {len(tokens) // words} chunks of {words} words")
    return [" ".join(tokens[i * words:(i + 1) * words]) for i in range(offset, offset + n)]
