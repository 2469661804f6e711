"""Every sampler: exact supports on hand-written distributions, no in-place edits, validation."""

import math

import pytest
import torch

from evalharness.errors import UserError
from evalharness.samplers import SAMPLERS


def logits_of(probs):
    return torch.log(torch.tensor([probs], dtype=torch.float32))


def support(sampler, probs):
    out = sampler.process(logits_of(probs))[0]
    return {i for i, v in enumerate(out.tolist()) if v != float("-inf")}


P = [0.5, 0.2, 0.15, 0.1, 0.05]

# (sampler name, parameters, distribution, exact expected support). Every registered sampler
# must have cases here: the contract test below fails for a sampler nobody tested.
SUPPORT_CASES = {
    "pure": [({}, P, {0, 1, 2, 3, 4})],
    "greedy": [({}, P, {0, 1, 2, 3, 4})],  # greedy takes the argmax of the untouched scores
    "temperature": [({"temperature": 0.5}, P, {0, 1, 2, 3, 4})],
    "top_k": [({"k": 1}, P, {0}), ({"k": 3}, P, {0, 1, 2}), ({"k": 10}, P, {0, 1, 2, 3, 4}),
              ({"k": 2}, [0.4, 0.2, 0.2, 0.2], {0, 1, 2, 3}),  # ties with the k-th are kept
              ({"k": 2, "temperature": 0.7}, P, {0, 1})],
    # (no case sits exactly on a cumulative boundary: 0.5 + 0.2 is not 0.7 in floating point)
    "top_p": [({"p": 0.49}, P, {0}), ({"p": 0.51}, P, {0, 1}), ({"p": 0.69}, P, {0, 1}),
              ({"p": 0.71}, P, {0, 1, 2}), ({"p": 1.0}, P, {0, 1, 2, 3, 4}), ({"p": 0.01}, P, {0}),
              ({"p": 0.5}, [0.3, 0.3, 0.2, 0.2], {0, 1}), ({"p": 0.61}, [0.3, 0.3, 0.2, 0.2], {0, 1, 2, 3}),
              # temperature first: t=0.5 squares and renormalises -> 0.25/0.34=0.735 alone reaches 0.7
              ({"p": 0.7, "temperature": 0.5}, P, {0})],
    "typical": [
        # H = 1.3331 nats; |-log p - H| = 0.640, 0.276, 0.564, 0.970, 1.663 -> order 1, 2, 0, 3, 4
        ({"p": 0.19}, P, {1}), ({"p": 0.3}, P, {1, 2}), ({"p": 0.36}, P, {1, 2, 0}), ({"p": 0.9}, P, {0, 1, 2, 3}),
        ({"p": 1.0}, P, {0, 1, 2, 3, 4})],
    "epsilon": [({"epsilon": 0.09}, P, {0, 1, 2, 3}), ({"epsilon": 0.11}, P, {0, 1, 2}),
                ({"epsilon": 0.9}, P, {0})],  # never empty: the argmax stays
    # eta: threshold = min(eta, sqrt(eta) * exp(-H)); H = 1.3331 -> exp(-H) = 0.2637
    "eta": [({"eta": 0.01}, P, {0, 1, 2, 3, 4}),  # min(0.01, 0.1*0.2637) = 0.01
            ({"eta": 0.1}, P, {0, 1, 2, 3}),      # min(0.1, 0.3162*0.2637=0.0834) = 0.0834
            ({"eta": 0.3}, P, {0, 1, 2}),         # min(0.3, 0.5477*0.2637=0.1444) = 0.1444
            ({"eta": 0.9}, P, {0})],              # min(0.9, 0.9487*0.2637=0.2501) = 0.2501
    "min_p": [({"p": 0.09}, P, {0, 1, 2, 3, 4}), ({"p": 0.29}, P, {0, 1, 2}), ({"p": 0.31}, P, {0, 1}),
              ({"p": 1.0}, P, {0})],
    "beam": [({"num_beams": 4}, P, {0, 1, 2, 3, 4})],        # search: scores untouched
    "stochastic_beam": [({"num_beams": 4}, P, {0, 1, 2, 3, 4})],  # search over the full distribution
    "contrastive": [({"alpha": 0.6, "k": 4}, P, {0, 1, 2, 3, 4})],
    # top-nσ: log P has max -0.693 and (Bessel) σ 0.852 -> threshold -0.693 - n * 0.852
    "top_n_sigma": [({"n": 1.0}, P, {0}), ({"n": 1.2}, P, {0, 1}), ({"n": 2.0}, P, {0, 1, 2, 3}),
                    ({"n": 3.0}, P, {0, 1, 2, 3, 4}), ({"n": 1.2, "temperature": 0.5}, P, {0, 1}),
                    ({"n": 0.0}, P, {0})],
    # mirostat, a row's first step: mu = 2 tau; surprises -log2 P = 1, 2.32, 2.74, 3.32, 4.32 bits
    # hf: transformers' chain, top_k=50 by default (all of 5 tokens); top_p 0.6 drops the tail
    # whose ascending cumulative mass is <= 0.4: 0.05 + 0.1 + 0.15
    "hf": [({}, P, {0, 1, 2, 3, 4}), ({"top_k": 2}, P, {0, 1}), ({"top_p": 0.6}, P, {0, 1}),
           ({"top_k": 0, "min_p": 0.35}, P, {0, 1})],
    "mirostat": [({"tau": 1.5}, P, {0, 1, 2}), ({"tau": 2.5}, P, {0, 1, 2, 3, 4}),
                 ({"tau": 0.4}, P, {0})],  # nothing within 0.8 bits: the argmax stays
}


# Interpolation m: the support of every truncation sampler becomes the whole vocabulary.
# (Parameters whose truncated support on P is {0} or {1}, see the cases above.)
INTERPOLATED = {"top_k": {"k": 1}, "top_p": {"p": 0.49}, "typical": {"p": 0.19}, "epsilon": {"epsilon": 0.9},
                "eta": {"eta": 0.9}, "min_p": {"p": 1.0}, "top_n_sigma": {"n": 1.0}, "mirostat": {"tau": 0.4}}
for _name, _params in INTERPOLATED.items():
    SUPPORT_CASES[_name].append(({**_params, "interpolation": 0.1}, P, {0, 1, 2, 3, 4}))
    SUPPORT_CASES[_name].append(({**_params, "interpolation": 1e-9}, P, {0, 1, 2, 3, 4}))
    SUPPORT_CASES[_name].append(({**_params, "interpolation": 0.0}, P, {1} if _name == "typical" else {0}))


def test_every_registered_sampler_has_support_cases():
    assert set(SUPPORT_CASES) == set(SAMPLERS.names())


NO_INTERPOLATION = {"hf": "reproduces transformers' generate, whose warper chain has no interpolation"}


def test_every_truncation_sampler_takes_interpolation():
    """Every sampler that truncates (some case has a support smaller than the vocabulary)."""
    truncating = {n for n, cases in SUPPORT_CASES.items() if any(len(c[2]) < len(c[1]) for c in cases)}
    assert truncating - set(NO_INTERPOLATION) == set(INTERPOLATED)
    for name in INTERPOLATED:
        assert dict(SAMPLERS.get(name).parameters())["interpolation"] == 0.0


@pytest.mark.parametrize("name", sorted(INTERPOLATED))
@pytest.mark.parametrize("m", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_interpolated_probabilities_are_exactly_the_mixture(name, m, temperature):
    """softmax(process) = (1 - m) * truncated + m * full, both after the temperature."""
    params = {**INTERPOLATED[name], "temperature": temperature}
    truncated = torch.softmax(SAMPLERS.get(name)(**params).process(logits_of(P)).double(), -1)
    full = torch.softmax(logits_of(P).double() / temperature, -1)
    mixed = torch.softmax(SAMPLERS.get(name)(**params, interpolation=m).process(logits_of(P)).double(), -1)
    assert torch.allclose(mixed, (1 - m) * truncated + m * full, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(INTERPOLATED))
@pytest.mark.parametrize("m", [0.0, 0.05, 0.5, 1.0])
def test_interpolate_with_untempered_mixes_in_the_models_own_distribution(name, m):
    """gen.py's top-k: (1 - m) * truncated (after the temperature) + m * softmax(raw logits)."""
    params = {**INTERPOLATED[name], "temperature": 0.7}
    truncated = torch.softmax(SAMPLERS.get(name)(**params).process(logits_of(P)).double(), -1)
    sampler = SAMPLERS.get(name)(**params, interpolation=m, interpolate_with="untempered")
    mixed = torch.softmax(sampler.process(logits_of(P)).double(), -1)
    assert torch.allclose(mixed, (1 - m) * truncated + m * torch.tensor([P], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("name", sorted(INTERPOLATED))
def test_interpolate_with_is_named_only_when_set_and_is_validated(name):
    from evalharness.experiment.config import make_run

    cls = SAMPLERS.get(name)
    assert dict(cls.parameters())["interpolate_with"] == "tempered"
    plain = make_run(cls, name, dict(INTERPOLATED[name]), "samplers[0]")
    assert "interpolate_with" not in plain.name and "interpolate_with" not in plain.params_dict
    assert cls(**plain.params_dict) == cls(**INTERPOLATED[name])
    same = make_run(cls, name, {**INTERPOLATED[name], "interpolate_with": "tempered"}, "samplers[0]")
    assert same == plain  # the default, written out, is the same run
    other = make_run(cls, name, {**INTERPOLATED[name], "interpolate_with": "untempered"}, "samplers[0]")
    assert other.name == plain.name + "-interpolate_with=untempered"
    assert other.params_dict["interpolate_with"] == "untempered"
    expected = r"^samplers\[0\] \(\w+\)\.interpolate_with: must be one of tempered, untempered"
    with pytest.raises(UserError, match=expected):
        make_run(cls, name, {**INTERPOLATED[name], "interpolate_with": "raw"}, "samplers[0]")


@pytest.mark.parametrize("name,params,probs,expected",
                         [(n, *case) for n, cases in SUPPORT_CASES.items() for case in cases])
def test_exact_support(name, params, probs, expected):
    assert support(SAMPLERS.get(name)(**params), probs) == expected


def test_eta_thresholds_match_hand_computation():
    entropy = -sum(p * math.log(p) for p in P)
    assert abs(entropy - 1.3331) < 1e-4
    assert abs(math.sqrt(0.3) * math.exp(-entropy) - 0.1444) < 1e-4


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_process_never_modifies_scores_in_place(name):
    params = SUPPORT_CASES[name][0][0]
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    before = scores.clone()
    out = SAMPLERS.get(name)(**params).process(scores)
    assert torch.equal(scores, before)
    assert out.data_ptr() != scores.data_ptr()


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_cites_its_paper_and_defines_itself(name):
    cls = SAMPLERS.get(name)
    assert cls.paper and cls.__doc__ and len(cls.__doc__) > 60
    assert cls.strategy in ("sample", "greedy", "beam", "stochastic_beam", "contrastive")


BAD_PARAMS = [
    ("top_p", {"p": 0.0}, "p"), ("top_p", {"p": 1.5}, "p"), ("top_p", {"p": "high"}, "p"),
    ("top_k", {"k": 0}, "k"), ("top_k", {"k": 2.5}, "k"), ("top_k", {"k": True}, "k"),
    ("temperature", {"temperature": 0}, "temperature"), ("temperature", {"temperature": -1}, "temperature"),
    ("top_k", {"k": 5, "temperature": 0.0}, "temperature"), ("typical", {"p": 0}, "p"),
    ("epsilon", {"epsilon": 0}, "epsilon"), ("epsilon", {"epsilon": 1}, "epsilon"), ("eta", {"eta": 1.2}, "eta"),
    ("min_p", {"p": 0}, "p"), ("beam", {"num_beams": 0}, "num_beams"),
    ("contrastive", {"alpha": 1.5, "k": 4}, "alpha"), ("contrastive", {"alpha": 0.5, "k": 0}, "k"),
    ("temperature", {"temperature": float("nan")}, "temperature"),
    ("stochastic_beam", {"num_beams": 0}, "num_beams"), ("stochastic_beam", {"num_beams": 2.0}, "num_beams"),
    ("hf", {"top_k": -1}, "top_k"), ("hf", {"top_p": 0.0}, "top_p"), ("hf", {"temperature": 0.0}, "temperature"),
    ("hf", {"eta_cutoff": 1.0}, "eta_cutoff"), ("hf", {"min_p": 1.5}, "min_p"),
    ("top_n_sigma", {"n": -0.5}, "n"), ("mirostat", {"tau": 0}, "tau"), ("mirostat", {"tau": 3, "eta": 0}, "eta"),
] + [(name, {**params, "interpolation": bad}, "interpolation")
     for name, params in INTERPOLATED.items() for bad in (-0.1, 1.5, "some", float("nan"))]


@pytest.mark.parametrize("name,params,key", BAD_PARAMS)
def test_out_of_range_parameters_are_rejected_naming_the_key(name, params, key):
    with pytest.raises(UserError, match=rf"^{key}: must be"):
        SAMPLERS.get(name)(**params)


# --- the fast supports against the definition by a full sort (issue 11) ----------------------

def full_sort_support(mass: torch.Tensor, key: torch.Tensor, p: float) -> torch.Tensor:
    """The definition, computed the slow way: sort by key (with indices), sum the float64
    masses in that order, keep every token whose key is <= the key where the sum reaches p."""
    sorted_key, order = torch.sort(key, dim=-1)
    cumulative = torch.cumsum(mass.gather(-1, order), dim=-1)
    last = (cumulative < p).sum(dim=-1, keepdim=True).clamp(max=mass.shape[-1] - 1)
    return key <= sorted_key.gather(-1, last)


def reference_probabilities(scores):
    logp = torch.log_softmax(scores.double(), dim=-1)
    probs = torch.softmax(scores.double(), dim=-1)
    return probs, logp, -(probs * logp.nan_to_num(neginf=0.0)).sum(dim=-1, keepdim=True)


def logit_rows():
    """Rows of every kind a model gives: flat and peaked, 50 and 8,192 tokens, many exact
    ties (rounded logits), and half the vocabulary at -inf (a model that masks tokens)."""
    g = torch.Generator().manual_seed(0)
    for vocab in (50, 8192):
        for scale in (0.5, 2.0, 5.0, 12.0):
            rows = torch.randn(12 if vocab > 50 else 24, vocab, generator=g) * scale
            yield rows
            yield rows.round(decimals=1)
            masked = rows.clone()
            masked[:, : vocab // 2] = float("-inf")
            yield masked


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.95, 0.999])
def test_top_p_support_is_the_full_sort_definition(p):
    from evalharness.samplers.top_p import nucleus

    for rows in logit_rows():
        probs = reference_probabilities(rows)[0]
        assert torch.equal(nucleus(rows, p), full_sort_support(probs, -probs, p))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.95, 0.999])
def test_typical_support_is_the_full_sort_definition(p):
    from evalharness.samplers.typical import typical_set

    for rows in logit_rows():
        probs, logp, entropy = reference_probabilities(rows)
        expected = full_sort_support(probs, (-logp - entropy).abs(), p)
        assert torch.equal(typical_set(rows, p), expected)


@pytest.mark.parametrize("eta", [0.0009, 0.01, 0.2])
def test_eta_support_is_the_definition(eta):
    sampler = SAMPLERS.get("eta")(eta=eta)
    for rows in logit_rows():
        probs, _, entropy = reference_probabilities(rows)
        keep = probs >= torch.clamp(math.sqrt(eta) * torch.exp(-entropy), max=eta)
        keep.scatter_(-1, rows.argmax(dim=-1, keepdim=True), True)
        assert torch.equal(sampler.process(rows) > float("-inf"), keep)


@pytest.mark.parametrize("name", ["top_p", "typical"])
def test_p_of_one_keeps_every_token(name):
    """Even tokens too unlikely to change a float64 sum (a sum can reach 1 before them)."""
    rows = torch.tensor([[30.0, 0.0, -10.0, -40.0, -700.0]])
    assert bool((SAMPLERS.get(name)(p=1.0).process(rows) > float("-inf")).all())
