"""Each truncation sampler against transformers' own warper (generation/logits_process.py).

The supports are identical except where we differ on purpose, each case enumerated and tested
below (and listed in the README, "Against transformers' warpers"):
1. float64 instead of float32 arithmetic: we compute probabilities, entropies and cumulative
   sums in float64; transformers in the logits' dtype (float32 for a float32 model). On float64
   logits the two agree on every row; on float32 logits a row may differ only where the
   float32 rounding of transformers' own arithmetic moves a token across the boundary, i.e.
   exactly the rows where transformers' warper gives a different support on the same logits
   cast to float64.
2. Ties at the boundary: top-p keeps every token tied with the last one it needs (transformers
   keeps the ones its sort puts first, so its support depends on how torch.sort orders ties);
   typical likewise keeps ties on the score at the edge (transformers also keeps ties on the
   score, but its cumulative mass follows its sort).
3. min_tokens_to_keep: we have none beyond "the argmax always stays" (transformers' default 1,
   which generate() raises to 2 or more for beam sampling); epsilon keeps one argmax where
   transformers keeps every token tied with the maximum when all fall below the
   threshold (eta never: its threshold is below max P).
Top-k and min-p have no deliberate difference besides 1.
"""

import pytest
import torch
from transformers.generation.logits_process import (
    EpsilonLogitsWarper, EtaLogitsWarper, MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    TypicalLogitsWarper,
)

from evalharness.generation.models import load_model
from evalharness.samplers import SAMPLERS

# (our sampler, its parameters, transformers' warper with the same setting)
PAIRS = [
    ("top_k", {"k": k}, lambda k=k: TopKLogitsWarper(top_k=k)) for k in (1, 40)
] + [
    ("top_p", {"p": p}, lambda p=p: TopPLogitsWarper(top_p=p)) for p in (0.3, 0.95)
] + [
    ("typical", {"p": p}, lambda p=p: TypicalLogitsWarper(mass=p)) for p in (0.2, 0.95)
] + [
    ("epsilon", {"epsilon": e}, lambda e=e: EpsilonLogitsWarper(epsilon=e)) for e in (3e-4, 0.2)
] + [
    ("eta", {"eta": e}, lambda e=e: EtaLogitsWarper(epsilon=e)) for e in (9e-4, 0.2)
] + [
    ("min_p", {"p": p}, lambda p=p: MinPLogitsWarper(min_p=p)) for p in (0.1, 0.5)
]
IDS = [f"{name}-{next(iter(params.values()))}" for name, params, _ in PAIRS]


def ours(name, params, scores):
    return SAMPLERS.get(name)(**params).process(scores) > float("-inf")


def theirs(warper, scores):
    return warper(None, scores) > float("-inf")


def random_logits(dtype, vocab=1000, rows=24, seed=0):
    """Continuous random logits from flat to peaked: no ties (measure zero)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0, 16.0]).repeat_interleave(rows // 6)[:, None]
    return (torch.randn(rows, vocab, generator=g, dtype=torch.float64) * scales).to(dtype)


@pytest.fixture(scope="module")
def model_logits():
    """Next-token logits of the builtin model (float32, 8,192 tokens) after every prefix of a few
    sentences of its own domain: real distributions, peaked and flat."""
    loaded = load_model("builtin:pydocs-gpt2-small", "cpu")
    texts = ["The os module provides a portable way of using operating system dependent functionality.",
             "Return a new sorted list from the items in iterable. Has two optional arguments",
             "class collections.OrderedDict([items]) Return an instance of a dict subclass"]
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
            rows.append(loaded.model(ids).logits[0].float())
    return torch.cat(rows)


@pytest.mark.parametrize("name,params,warper", PAIRS, ids=IDS)
def test_identical_supports_on_float64_logits(name, params, warper):
    """Difference 1 removed (both sides in float64), no ties: the same support on every row."""
    scores = random_logits(torch.float64)
    assert torch.equal(ours(name, params, scores), theirs(warper(), scores))


@pytest.mark.parametrize("name,params,warper", PAIRS, ids=IDS)
@pytest.mark.parametrize("source", ["random", "model"])
def test_float32_logits_differ_only_where_float32_rounding_moves_the_boundary(name, params, warper, source,
                                                                             model_logits):
    """On float32 logits (random, and the builtin model's), every row whose support differs
    from transformers' is a row where transformers itself changes its mind once its arithmetic
    is float64 (difference 1); on every such row ours is transformers' float64 support."""
    scores = random_logits(torch.float32) if source == "random" else model_logits
    mine, theirs32 = ours(name, params, scores), theirs(warper(), scores)
    theirs64 = theirs(warper(), scores.double())
    differing = (mine != theirs32).any(dim=-1)
    rounding = (theirs64 != theirs32).any(dim=-1)
    assert not bool((differing & ~rounding).any()), f"rows {differing.nonzero().view(-1).tolist()}"
    assert torch.equal(mine, theirs64)
    assert int(differing.sum()) <= max(2, scores.shape[0] // 10)  # a boundary case, not a habit


def test_a_float32_rounding_case_follows_the_float64_definition():
    """Difference 1 happens: on a flat 50,000-token row (row 49 of seeded randn * 0.1), top-p 0.9
    keeps 44,070 tokens under transformers' float32 cumulative sum and 44,071 under the same
    warper in float64; ours keeps the float64 support."""
    g = torch.Generator().manual_seed(1)
    row = (torch.randn(64, 50000, generator=g) * 0.1)[49:50]
    warper = TopPLogitsWarper(top_p=0.9)
    assert int(theirs(warper, row).sum()) == 44070 and int(theirs(warper, row.double()).sum()) == 44071
    assert torch.equal(ours("top_p", {"p": 0.9}, row), theirs(warper, row.double()))


def test_ties_at_the_top_p_boundary_are_all_kept():
    """Difference 2: P = (0.4, 0.2, 0.2, 0.2), p = 0.5: the nucleus needs one of the three tied
    tokens; we keep all three, transformers keeps the one its sort puts last (ascending sort)."""
    scores = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]], dtype=torch.float64))
    assert ours("top_p", {"p": 0.5}, scores).tolist() == [[True, True, True, True]]
    assert theirs(TopPLogitsWarper(top_p=0.5), scores).sum() == 2  # the 0.4 and one of the ties


def test_typical_ties_on_the_score_at_the_edge_are_kept_by_both():
    """Difference 2 for typical: tokens tied on |-log P - H| with the last one taken are kept
    (by transformers too); P = (0.4, 0.2, 0.2, 0.2) ranks the three 0.2 first (closest to H)."""
    scores = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]], dtype=torch.float64))
    assert ours("typical", {"p": 0.3}, scores).tolist() == [[False, True, True, True]]
    assert theirs(TypicalLogitsWarper(mass=0.3), scores).tolist() == [[False, True, True, True]]


def test_tied_maxima_below_the_epsilon_threshold_keep_one_argmax():
    """Difference 3: every token below epsilon and the top two tied: we keep one argmax (the
    lowest id), transformers every token tied with the maximum. (Eta never gets there: its
    threshold is <= sqrt(eta) exp(-H) <= sqrt(eta) max P < max P, so the argmax always passes.)"""
    scores = torch.log(torch.tensor([[0.3, 0.3, 0.2, 0.2]], dtype=torch.float64))
    assert ours("epsilon", {"epsilon": 0.4}, scores).tolist() == [[True, False, False, False]]
    assert theirs(EpsilonLogitsWarper(epsilon=0.4), scores).tolist() == [[True, True, False, False]]


def test_min_tokens_to_keep_is_one():
    """Difference 3: transformers' min_tokens_to_keep = 2 (its beam sampling) keeps a second
    token; ours always keeps just what the rule keeps, the argmax at least."""
    scores = torch.log(torch.tensor([[0.9, 0.06, 0.04]], dtype=torch.float64))
    assert ours("top_p", {"p": 0.5}, scores).tolist() == [[True, False, False]]
    assert theirs(TopPLogitsWarper(top_p=0.5), scores).tolist() == [[True, False, False]]
    assert theirs(TopPLogitsWarper(top_p=0.5, min_tokens_to_keep=2), scores).tolist() == [[True, True, False]]
