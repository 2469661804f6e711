"""evalharness's metrics as Hugging Face `evaluate` modules, one folder each.

Entry point: path(name), the folder to give evaluate.load():

    import evaluate
    from evalharness import evaluate_modules
    self_bleu = evaluate.load(evaluate_modules.path("self_bleu"))
    self_bleu.compute(predictions=[[5, 6, 7], [5, 6, 8], ...])   # token ids (or texts)

Every module runs the scorer of the same name on the inputs, so it gives exactly the values the
harness reports; the folders need no network (nothing is fetched at load or compute time).
The metric cards (README.md in each folder) follow the evaluate format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from evalharness.records import Generation

NAMES = ("self_bleu", "zipf", "repetition", "distinct", "detectability")
HERE = Path(__file__).resolve().parent


def path(name: str) -> str:
    """The folder of the module `name`, for evaluate.load()."""
    if name not in NAMES:
        raise ValueError(f"no evalharness evaluate module {name!r}; known: {', '.join(NAMES)}")
    return str(HERE / name)


def names() -> list[str]:
    return list(NAMES)


class WordTokenizer:
    """Whitespace words <-> ids, for texts given without a tokenizer (ids in order of first
    appearance; decode joins words with single spaces)."""

    bos_token_id = eos_token_id = pad_token_id = None

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, text: str) -> list[int]:
        for word in text.split():
            if word not in self.ids:
                self.ids[word] = len(self.words)
                self.words.append(word)
        return [self.ids[w] for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] for i in ids)


HOLTZMAN_2020 = """\
@inproceedings{holtzman2020curious,
  title={The Curious Case of Neural Text Degeneration},
  author={Holtzman, Ari and Buys, Jan and Du, Li and Forbes, Maxwell and Choi, Yejin},
  booktitle={ICLR},
  year={2020}
}
"""

TOKEN_INPUTS = """\
    predictions: list of token-id lists (exact), or list of texts (encoded with `tokenizer`, or
        split into whitespace words without one).
    tokenizer: an object with encode(text), e.g. a transformers tokenizer, for text inputs.
    eos_token_id (int or None): a trailing end-of-text id is dropped, as the harness does.
    resamples (int): with > 0, also `<metric>_low`/`<metric>_high`: a 95% bootstrap interval.
    seed (int): seed of the bootstrap (and of self_bleu's hypothesis draw), default 0.
"""
"""The inputs every token-level module takes (its own options are listed beside them)."""


def token_metric_info(description: str, citation: str, inputs_description: str, urls: list[str]):
    """The MetricInfo of a token-level module."""
    import evaluate

    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs_description,
                               features=token_features(), reference_urls=urls)


def score_tokens(scorer, predictions: Sequence, tokenizer=None, eos_token_id: int | None = None,
                 resamples: int = 0, seed: int = 0) -> dict:
    """A token-level module's result: `scorer` on the predictions as Generation records."""
    generations = as_generations(encode_all(predictions, tokenizer), eos_token_id=eos_token_id)
    return scorer_output(scorer.score, generations, resamples, seed)


def token_features():
    """Inputs of the token-level modules: token-id lists, or texts."""
    import datasets

    return [datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
            datasets.Features({"predictions": datasets.Value("string")})]


def encode_all(texts: Sequence, tokenizer=None) -> list[list[int]]:
    """Token ids as given, or texts encoded with `tokenizer` (any object with encode(text); for a
    transformers tokenizer no special tokens are added), or split into whitespace words."""
    if all(not isinstance(t, str) for t in texts):
        return [[int(i) for i in t] for t in texts]
    tokenizer = tokenizer or WordTokenizer()
    try:
        return [list(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    except TypeError:  # an encode() without that keyword
        return [list(tokenizer.encode(t)) for t in texts]


def as_generations(token_ids: Sequence[Sequence[int]], texts: Sequence[str] | None = None,
                   eos_token_id: int | None = None, run: str = "evaluate") -> list[Generation]:
    """Generation records the scorers take (prompt ids "00000", ...); a trailing `eos_token_id`
    marks a text that ended with end-of-text, as in the harness's own records."""
    out = []
    for i, ids in enumerate(token_ids):
        ids = tuple(int(t) for t in ids)
        ended = eos_token_id is not None and bool(ids) and ids[-1] == eos_token_id
        out.append(Generation(f"{i:05d}", run, texts[i] if texts is not None else "", ids, len(ids), ended, (), ()))
    return out


def scorer_output(score, generations: Sequence[Generation], resamples: int = 0, seed: int = 0, **context) -> dict:
    """What a module returns: `score(generations, ScoringContext)` (a scorer's score method)'s
    values and, with resamples > 0, each value's 95% bootstrap interval over texts as
    `<metric>_low` / `<metric>_high`."""
    from evalharness.scorers.base import ScoringContext

    context.setdefault("human", ())
    result = score(generations, ScoringContext(resamples=resamples, seed=seed, **context))
    out = dict(result.values)
    for metric, (low, high) in result.ci.items():
        out[f"{metric}_low"], out[f"{metric}_high"] = low, high
    return out
