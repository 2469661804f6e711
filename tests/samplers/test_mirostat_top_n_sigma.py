"""Mirostat 2.0 and top-nσ against transcriptions of their reference algorithms, on the same inputs:
the top-nσ support of the authors' code (torch.std), and mirostat's per-row mu trajectory step by
step as llama.cpp's llama_sampler_mirostat_v2_apply computes it (written out in plain Python)."""

import math

import pytest
import torch

from evalharness.generation.decoding import inverse_cdf_sample, step_through
from evalharness.generation.human_logprobs import stateful_logprobs
from evalharness.samplers import SAMPLERS
from evalharness.samplers.mirostat import Mirostat
from evalharness.samplers.top_n_sigma import TopNSigma


def random_logits(rows: int, vocab: int, seed: int) -> torch.Tensor:
    """Logits with the heavy head of a language model's: a few large values over a Gaussian bulk."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 2.0
    head = torch.randint(0, vocab, (rows, 5), generator=g)
    return logits.scatter_add(-1, head, torch.rand(rows, 5, generator=g) * 12.0)


# --- top-nσ ------------------------------------------------------------------------------------

def reference_top_n_sigma(logits: torch.Tensor, n: float, temperature: float) -> torch.Tensor:
    """The authors' README: l = l / T; M, sigma = l.max(), l.std(); l[l < M - n * sigma] = -inf."""
    logits = logits.double() / temperature
    top, sigma = logits.max(dim=-1, keepdim=True).values, logits.std(dim=-1, keepdim=True)
    return logits.masked_fill(logits < top - n * sigma, float("-inf"))


@pytest.mark.parametrize("n", [0.5, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
def test_top_n_sigma_matches_the_authors_definition(n, temperature):
    logits = random_logits(16, 2000, seed=int(n * 10 + temperature * 100))
    ours = torch.softmax(TopNSigma(n=n, temperature=temperature).process(logits).double(), dim=-1)
    theirs = torch.softmax(reference_top_n_sigma(logits, n, temperature), dim=-1)
    assert torch.equal(ours > 0, theirs > 0)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert 1 <= int((ours > 0).sum(dim=-1).min())


def test_top_n_sigma_support_does_not_depend_on_the_temperature():
    logits = random_logits(8, 500, seed=3)
    supports = [TopNSigma(n=1.0, temperature=t).process(logits) > float("-inf") for t in (0.3, 1.0, 2.5)]
    assert torch.equal(supports[0], supports[1]) and torch.equal(supports[1], supports[2])


def test_top_n_sigma_leaves_excluded_tokens_out_of_its_statistics():
    logits = random_logits(4, 300, seed=5)
    masked = logits.clone()
    masked[:, 200:] = float("-inf")
    ours = TopNSigma(n=1.0).process(masked)[:, :200]
    assert torch.equal(ours > float("-inf"), reference_top_n_sigma(logits[:, :200], 1.0, 1.0) > float("-inf"))
    single = torch.full((1, 10), float("-inf"))
    single[0, 3] = 0.0
    assert (TopNSigma(n=1.0).process(single) > float("-inf")).nonzero().tolist() == [[0, 3]]


# --- mirostat ----------------------------------------------------------------------------------

def reference_mirostat_step(logits: list[float], mu: float, tau: float, eta: float, u: float,
                            temperature: float = 1.0) -> tuple[int, float]:
    """llama.cpp's mirostat v2 for one row, in float64 Python: softmax (sorted, descending), keep
    the prefix with -log2 p <= mu (at least one token), renormalise, draw, then
    mu -= eta * (-log2 p_renormalised(x) - tau). The draw is the harness's inverse CDF over token
    ids with the uniform u, so both sides draw the same token."""
    z = [v / temperature for v in logits]
    top = max(z)
    weights = [math.exp(v - top) for v in z]
    total = sum(weights)
    order = sorted(range(len(z)), key=lambda i: -weights[i])
    kept = []
    for i in order:
        if -math.log2(weights[i] / total) > mu:
            break
        kept.append(i)
    kept = set(kept or order[:1])
    mass = [weights[i] if i in kept else 0.0 for i in range(len(z))]
    kept_total = sum(mass)
    target, running, token = (1.0 - u) * kept_total, 0.0, len(z) - 1
    for i, m in enumerate(mass):
        running += m
        if running >= target:
            token = i
            break
    surprise = -math.log2(mass[token] / kept_total)
    return token, mu - eta * (surprise - tau)


@pytest.mark.parametrize("tau,eta,temperature", [(3.0, 0.1, 1.0), (5.0, 0.3, 1.0), (2.0, 1.0, 0.8)])
def test_mirostat_mu_trajectory_is_llama_cpp_v2_step_by_step(tau, eta, temperature):
    rows, vocab, steps = 5, 300, 25
    step_logits = [random_logits(rows, vocab, seed=100 + s) for s in range(steps)]
    uniforms = torch.rand(rows, steps, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    state = Mirostat(tau=tau, eta=eta, temperature=temperature).start_rows(rows)
    ref_mu = [2.0 * tau] * rows
    assert state.mu[:, 0].tolist() == ref_mu
    for s, logits in enumerate(step_logits):
        tokens = inverse_cdf_sample(torch.log_softmax(state.process(logits), dim=-1), uniforms[:, s])
        state.observe(tokens)
        for r in range(rows):
            token, ref_mu[r] = reference_mirostat_step(logits[r].tolist(), ref_mu[r], tau, eta,
                                                       float(uniforms[r, s]), temperature)
            assert int(tokens[r]) == token, (s, r)
        # (float32 logits divided by a temperature round to float32: agreement to ~1e-7 relative)
        assert state.mu[:, 0].tolist() == pytest.approx(ref_mu, rel=1e-6, abs=1e-6), s
    assert len({round(m, 6) for m in ref_mu}) > 1  # the rows' states really are their own


def test_the_decoding_loop_keeps_each_rows_mirostat_state():
    """step_through (every sampling loop) draws through start_rows and observes each step."""
    rows, vocab, steps, tau, eta = 4, 200, 12, 3.0, 0.5
    step_logits = [random_logits(rows, vocab, seed=300 + s) for s in range(steps)]
    uniforms = torch.rand(rows, steps, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    fed = iter(step_logits[1:])
    outs = step_through(step_logits[0], Mirostat(tau=tau, eta=eta), uniforms, steps, None, lambda token: next(fed))
    for r in range(rows):
        mu, expected = 2 * tau, []
        for s in range(steps):
            token, mu = reference_mirostat_step(step_logits[s][r].tolist(), mu, tau, eta, float(uniforms[r, s]))
            expected.append(token)
        assert outs[r].token_ids == expected


def test_human_text_drives_mirostat_state_prompt_by_prompt():
    """Each human token's log-probability under mirostat given the human prefix: prompts of
    different lengths (one empty) side by side, each with its own mu fed by its own tokens."""
    tau, eta, vocab = 2.5, 0.4, 150
    lengths = [6, 0, 3, 9]
    logits = random_logits(sum(lengths), vocab, seed=21)
    targets = torch.randint(0, vocab, (sum(lengths),), generator=torch.Generator().manual_seed(4))
    logits[torch.arange(len(targets)), targets] += 9.0  # human tokens mostly inside the support
    got = stateful_logprobs(Mirostat(tau=tau, eta=eta), logits, targets, lengths)
    start, outside = 0, 0
    for length in lengths:
        mu = 2 * tau
        for i in range(start, start + length):
            z = logits[i].double()
            surprise = -torch.log_softmax(z, dim=-1) / math.log(2)
            kept = (surprise <= mu) | (z == z.max())
            lp = torch.log_softmax(z.masked_fill(~kept, float("-inf")), dim=-1)[targets[i]]
            if math.isfinite(lp):
                assert float(got[i]) == pytest.approx(float(lp), abs=1e-5)
                mu -= eta * (-float(lp) / math.log(2) - tau)
            else:  # outside the support: -inf, and mu stays as it was
                outside += 1
                assert float(got[i]) == float("-inf")
        start += length
    assert 0 < outside < len(targets) // 2, outside  # both cases met


def test_mirostat_as_a_plain_logits_processor_refuses_instead_of_forgetting_its_state():
    with pytest.raises(TypeError, match="start_rows"):
        Mirostat(tau=3.0)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 5))


def test_both_are_registered_with_their_papers():
    assert SAMPLERS.get("mirostat") is Mirostat and "Basu" in Mirostat.paper
    assert SAMPLERS.get("top_n_sigma") is TopNSigma and "Tang" in TopNSigma.paper
    assert [p for p, _ in Mirostat.parameters()] == ["tau", "eta", "temperature", "interpolation"]


def test_on_a_model_a_prompts_mirostat_text_does_not_depend_on_its_batch(tiny_model_dir, one_thread):
    """The decoding contract holds with per-row state: batch 1 and batch 5 give the same tokens."""
    from helpers import decode_batches, padded_contexts
    from evalharness.generation.models import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    contexts = padded_contexts(loaded, n=5)
    sampler = Mirostat(tau=4.0, eta=0.3)
    alone = decode_batches(loaded, sampler, contexts, batch=1)
    together = decode_batches(loaded, sampler, contexts, batch=5)
    assert [o.token_ids for o in alone] == [o.token_ids for o in together]
    assert any(o.logprobs_sampler != o.logprobs_model for o in together)  # it truncated something
