"""The `hf` sampler against transformers' own generate, and our samplers inside generate.

generate(..., output_scores=True, output_logits=True) returns, at every step, the raw logits and
the scores after transformers' whole processing (its defaults, its order): the `hf` sampler must
turn the first into the second. Then the draws: with generate's torch.multinomial replaced by
the harness's inverse-CDF draw on the same uniforms, a run through `hf` and generate produce the
same tokens."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessorList

from evalharness.generation.decoding import decode, draw_uniforms, inverse_cdf_sample, row_seed
from evalharness.samplers import SAMPLERS
from evalharness.samplers.mirostat import Mirostat
from evalharness.samplers.top_p import TopP

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = [
    {},  # generate's defaults alone: top-k 50
    {"top_p": 0.9},  # the trap: top-k 50 and top-p 0.9
    {"top_k": 0, "top_p": 0.8, "temperature": 0.7},
    {"typical_p": 0.9, "top_k": 0},
    {"min_p": 0.1, "temperature": 1.3},
    {"epsilon_cutoff": 3e-3, "eta_cutoff": 1e-3, "top_k": 20},
    {"top_k": 30, "top_p": 0.95, "typical_p": 0.95, "min_p": 0.02, "temperature": 0.9},
]


@pytest.fixture(scope="module", params=["real", "random"])
def model(request, tiny_model_dir):
    """The tiny GPT-2 as trained-from-nothing (flat-ish logits), and with a random output layer
    scaled up (peaked logits, where truncation bites)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    if request.param == "random":
        with torch.no_grad():
            g = torch.Generator().manual_seed(5)
            model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape, generator=g) * 0.5)
    return model


def contexts(model, rows: int = 6, length: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (rows, length), generator=g)


def generate(model, ids, config, steps, **extra):
    torch.manual_seed(0)
    return model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=steps,
                          pad_token_id=model.config.eos_token_id, output_scores=True,
                          output_logits=True, return_dict_in_generate=True, **config, **extra)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_at_every_step_the_distribution_is_generates_own(model, config):
    out = generate(model, contexts(model), config, steps=8)
    sampler = SAMPLERS.get("hf")(**config)
    for raw, processed in zip(out.logits, out.scores):
        ours = sampler.process(raw)
        assert torch.equal(ours > float("-inf"), processed > float("-inf"))
        assert torch.allclose(torch.softmax(ours.double(), -1), torch.softmax(processed.double(), -1), atol=1e-6)


def test_the_defaults_are_generates_and_the_note_names_them():
    hf = SAMPLERS.get("hf")()
    assert (hf.temperature, hf.top_k, hf.top_p, hf.typical_p) == (1.0, 50, 1.0, 1.0)
    note = SAMPLERS.get("hf")(top_p=0.9).note()
    assert "TopKLogitsWarper, TopPLogitsWarper" in note and "top_k=50" in note and "top_p" not in note.split(":")[-1]


@pytest.mark.parametrize("config", [{"top_p": 0.9}, {"top_k": 0, "typical_p": 0.9, "temperature": 0.8}])
def test_a_run_draws_the_tokens_generate_draws_from_the_same_uniforms(model, config, monkeypatch):
    """generate's torch.multinomial, replaced by the harness's draw on the harness's uniforms
    (one per row per step, from each row's seed): the same tokens as decode() through `hf`."""
    ids, steps = contexts(model), 10
    seeds = [row_seed(0, f"{i:05d}", "hf") for i in range(len(ids))]
    uniforms = draw_uniforms(seeds, steps, "cpu")
    step = iter(range(steps))

    def harness_draw(probs, num_samples=1, **_):
        return inverse_cdf_sample(torch.log(probs), uniforms[:, next(step)])[:, None]

    sampler = SAMPLERS.get("hf")(**config)
    ours = decode(model, ids.tolist(), sampler, steps, None, model.config.eos_token_id, seeds, "cpu")
    monkeypatch.setattr(torch, "multinomial", harness_draw)
    theirs = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=steps,
                            pad_token_id=model.config.eos_token_id, **config)
    assert next(step, None) is None  # generate drew through the harness's draw, once per step
    eos = model.config.eos_token_id
    ours = [o.token_ids[:o.token_ids.index(eos) + 1] if eos in o.token_ids else o.token_ids for o in ours]
    assert ours == [row[:len(mine)] for row, mine in zip(theirs[:, ids.shape[1]:].tolist(), ours)]
    assert all(len(mine) == steps or mine[-1] == eos for mine in ours)  # generate pads after the end


def test_our_sampler_inside_generate_samples_only_from_our_exact_support(model):
    """The README example: a harness sampler as generate's logits processor, with the
    generation-config trap turned off (top_k=0: no default top-k 50 on top)."""
    ids = contexts(model)
    out = generate(model, ids, {"top_k": 0}, steps=12, logits_processor=LogitsProcessorList([TopP(p=0.9)]))
    for step, (raw, processed) in enumerate(zip(out.logits, out.scores)):
        support = TopP(p=0.9).process(raw) > float("-inf")
        assert torch.equal(processed > float("-inf"), support)
        drawn = out.sequences[:, ids.shape[1] + step]
        assert bool(support.gather(-1, drawn[:, None]).all())


def test_without_top_k_0_generate_adds_its_default_top_k_on_top(model):
    """The trap itself: the same processor, generate's defaults left on, keeps at most 50 tokens."""
    out = generate(model, contexts(model), {}, steps=4, logits_processor=LogitsProcessorList([TopP(p=0.999)]))
    ours = [int((TopP(p=0.999).process(raw) > float("-inf")).sum(-1).max()) for raw in out.logits]
    kept = [int((s > float("-inf")).sum(-1).max()) for s in out.scores]
    assert max(kept) <= 50 < max(ours)


def test_mirostat_inside_generate_keeps_each_sequences_state(model):
    """Mirostat(...).start_rows(batch) as generate's processor observes each drawn token from
    input_ids: its scores at every step are those of a fresh state fed generate's own tokens."""
    ids, steps = contexts(model), 10
    out = generate(model, ids, {"top_k": 0}, steps=steps,
                   logits_processor=LogitsProcessorList([Mirostat(tau=3.0, eta=0.5).start_rows(len(ids))]))
    replay = Mirostat(tau=3.0, eta=0.5).start_rows(len(ids))
    for step, (raw, processed) in enumerate(zip(out.logits, out.scores)):
        assert torch.equal(replay.process(raw), processed), step
        replay.observe(out.sequences[:, ids.shape[1] + step])
    assert len(set(replay.mu[:, 0].tolist())) > 1
