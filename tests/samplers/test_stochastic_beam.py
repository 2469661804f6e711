"""Stochastic beam search: the Gumbel-top-k trick over whole sequences, checked by frequencies."""

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from evalharness.generation.decoding import decode, row_seed, teacher_forced_logprobs
from evalharness.errors import UserError
from evalharness.generation.models import load_model
from evalharness.samplers import SAMPLERS
from evalharness.samplers.stochastic_beam import gumbels_with_maximum
from helpers import decode_batches as run, padded_contexts as contexts

VOCAB, LENGTH, DRAWS = 5, 3, 20_000


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    """A 5-token GPT-2 with peaked (large-weight) distributions, and the exact probability of
    each of its 125 three-token continuations of the context [0] (no end-of-text)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=8, n_layer=1, n_head=1, initializer_range=1.0,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(3)
    model = GPT2LMHeadModel(config).eval()
    sequences = list(itertools.product(range(VOCAB), repeat=LENGTH))
    logprobs = teacher_forced_logprobs(model, [[0]] * len(sequences), [list(s) for s in sequences], 0, "cpu")
    probs = np.exp([sum(lp) for lp in logprobs])
    return model, {s: i for i, s in enumerate(sequences)}, probs / probs.sum()


def seeds(n, run="sbs"):
    return [row_seed(0, f"{i:05d}", run) for i in range(n)]


def frequencies(index, rows) -> np.ndarray:
    return np.bincount([index[tuple(r)] for r in rows], minlength=len(index))


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's test, cells expecting fewer than 5 draws pooled into one."""
    expected = probs * counts.sum()
    small = expected < 5
    return chisquare(np.append(counts[~small], counts[small].sum()),
                     np.append(expected[~small], expected[small].sum())).pvalue


def without_replacement(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marginals of the 2nd and 3rd draw of sampling without replacement (Gumbel-top-k)."""
    first_second = probs[:, None] * probs[None, :] / (1 - probs[:, None])
    np.fill_diagonal(first_second, 0.0)
    rest = 1 - probs[:, None] - probs[None, :]
    third = np.zeros_like(probs)
    for z in range(len(probs)):
        weight = np.where(rest > 1e-12, probs[z] / np.where(rest > 1e-12, rest, 1.0), 0.0)
        weight[z, :] = weight[:, z] = 0.0
        third[z] = (first_second * weight).sum()
    return first_second.sum(axis=0), third


def test_the_conditioned_gumbels_are_kools_formula_computed_stably():
    g = torch.Generator().manual_seed(0)  # its own generator: not the global one other tests share
    locations = torch.randn(6, 9, dtype=torch.float64, generator=g)
    maximum = torch.randn(6, dtype=torch.float64, generator=g)
    noise = -torch.log(-torch.log(torch.rand(6, 9, dtype=torch.float64, generator=g)))
    perturbed = locations + noise
    top = perturbed.max(dim=-1, keepdim=True).values
    direct = -torch.log(torch.exp(-maximum[:, None]) - torch.exp(-top) + torch.exp(-perturbed))
    ours = gumbels_with_maximum(locations, maximum, noise)
    assert torch.allclose(ours, direct, atol=1e-12, rtol=0)
    assert torch.equal(ours.max(dim=-1).values, maximum)  # the maximum is exactly the condition
    empty = gumbels_with_maximum(locations, torch.full((6,), float("-inf"), dtype=torch.float64), noise)
    assert bool((empty == float("-inf")).all())


def test_the_beam_is_a_sample_without_replacement_of_whole_sequences(small):
    """Rank 1 of the beam follows the model's sequence distribution (the output); ranks 2 and 3
    follow sampling without replacement — a test that fails for gen.py's unreordered parent
    log-probabilities (measured: p = 3e-94 at rank 3 with that bug)."""
    model, index, probs = small
    beams = SAMPLERS.get("stochastic_beam")(num_beams=3).search(model, [[0]] * DRAWS, seeds(DRAWS), LENGTH,
                                                                 None, 0, "cpu")
    ranked = beams.tokens.view(DRAWS, 3, LENGTH)
    second, third = without_replacement(probs)
    for rank, target in enumerate((probs, second, third)):
        counts = frequencies(index, ranked[:, rank].tolist())
        assert chi_square_pvalue(counts, target) > 1e-3, rank
        assert 0.5 * np.abs(counts / DRAWS - target).sum() < 0.03, rank
    assert beams.results() == ranked[:, 0].tolist()  # no end-of-text: the output is rank 1


def test_one_beam_is_ancestral_sampling_in_distribution(small):
    model, index, probs = small
    sbs = decode(model, [[0]] * DRAWS, SAMPLERS.get("stochastic_beam")(num_beams=1), LENGTH, None, 0,
                 seeds(DRAWS), "cpu")
    pure = decode(model, [[0]] * DRAWS, SAMPLERS.get("pure")(), LENGTH, None, 0, seeds(DRAWS, "pure"), "cpu")
    sbs_counts = frequencies(index, [c.token_ids for c in sbs])
    pure_counts = frequencies(index, [c.token_ids for c in pure])
    assert chi_square_pvalue(sbs_counts, probs) > 1e-3
    both = np.stack([sbs_counts, pure_counts])
    both = both[:, both.sum(axis=0) >= 10]  # the two-sample test on cells both samples can fill
    assert chi2_contingency(both).pvalue > 1e-3


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def test_end_of_text_finishes_a_hypothesis_and_logprobs_are_teacher_forced(loaded):
    """End-of-text made likely (a bias on its logit): outputs end at it, finished hypotheses are
    never extended, and log-probabilities are recorded as beam search records them."""
    ctxs = contexts(loaded)
    bias = torch.zeros(loaded.model.lm_head.weight.shape[0])
    bias[loaded.eos_id] = 3.0  # 9 of the 16 outputs then end with it (measured)
    hook = loaded.model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    try:
        outs = run(loaded, SAMPLERS.get("stochastic_beam")(num_beams=4), ctxs, 8, max_new=12)
        rescored = teacher_forced_logprobs(loaded.model, ctxs, [o.token_ids for o in outs], loaded.pad_id, "cpu")
    finally:
        hook.remove()
    assert 0 < sum(o.stopped_by_eos for o in outs) < len(outs)
    for o, lp in zip(outs, rescored):
        assert o.stopped_by_eos == (o.token_ids[-1] == loaded.eos_id)
        assert loaded.eos_id not in o.token_ids[:-1]
        assert np.allclose(o.logprobs_model, lp, atol=1e-5) and o.logprobs_sampler == o.logprobs_model


EOS = VOCAB - 1


@pytest.fixture(scope="module")
def with_eos():
    """A 5-token GPT-2 whose last token is end-of-text, and the exact probability of each of its
    85 complete continuations of [0] within 3 tokens: those ending with end-of-text (earlier
    end-of-text nowhere) and those of 3 tokens without end-of-text (the budget)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=8, n_layer=1, n_head=1, initializer_range=1.0,
                        bos_token_id=0, eos_token_id=EOS)
    torch.manual_seed(3)
    model = GPT2LMHeadModel(config).eval()
    leaves = [s for n in range(1, LENGTH + 1) for s in itertools.product(range(VOCAB), repeat=n)
              if EOS not in s[:-1] and (s[-1] == EOS or n == LENGTH)]
    logprobs = teacher_forced_logprobs(model, [[0]] * len(leaves), [list(s) for s in leaves], 0, "cpu")
    probs = np.exp([sum(lp) for lp in logprobs])
    assert abs(probs.sum() - 1) < 1e-6  # the leaves are every way the search can end
    return model, {s: i for i, s in enumerate(leaves)}, probs / probs.sum()


def early_share(index, rows) -> float:
    """Share of outputs that end with end-of-text before the budget."""
    return sum(len(r) < LENGTH for r in rows) / len(rows)


def test_with_end_of_text_the_output_is_an_exact_sample_of_whole_sequences(with_eos):
    """Default rule (a finished hypothesis only when its G beats every alive one's): the
    outputs' frequencies, early-ending ones included, follow the model's probabilities of
    complete sequences. gen.py's rule (prefer_finished) fails the same test and returns far
    more early-ending sequences (measured on this model: 79% against 6.3% expected)."""
    model, index, probs = with_eos
    beams = SAMPLERS.get("stochastic_beam")(num_beams=4).search(model, [[0]] * DRAWS, seeds(DRAWS), LENGTH, EOS, 0,
                                                                 "cpu")
    exact, biased = beams.results(), beams.results(prefer_finished=True)
    expected_early = sum(p for s, p in zip(index, probs) if len(s) < LENGTH)
    counts = frequencies(index, exact)
    assert chi_square_pvalue(counts, probs) > 1e-3
    assert 0.5 * np.abs(counts / DRAWS - probs).sum() < 0.03
    assert abs(early_share(index, exact) - expected_early) < 0.01
    assert chi_square_pvalue(frequencies(index, biased), probs) < 1e-6
    assert early_share(index, biased) > expected_early + 0.2  # the documented bias
    assert sum(a != b for a, b in zip(exact, biased)) > 0


def test_prefer_finished_is_a_validated_option_that_decode_follows(with_eos):
    model, index, _ = with_eos
    with pytest.raises(UserError, match=r"^prefer_finished: must be true or false"):
        SAMPLERS.get("stochastic_beam")(num_beams=4, prefer_finished="yes")
    for prefer in (False, True):
        sampler = SAMPLERS.get("stochastic_beam")(num_beams=4, prefer_finished=prefer)
        outs = decode(model, [[0]] * 64, sampler, LENGTH, EOS, 0, seeds(64), "cpu")
        searched = sampler.search(model, [[0]] * 64, seeds(64), LENGTH, EOS, 0, "cpu").results(prefer)
        assert [o.token_ids for o in outs] == searched
        assert all(o.stopped_by_eos == (o.token_ids[-1] == EOS) for o in outs)
