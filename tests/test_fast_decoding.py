"""The static-KV-cache path (model.compile: true) against the eager loop on the same model:
identical tokens, byte-identical log-probs where attention spans the written columns (CPU),
and a bounded log-prob difference where it spans the whole preallocated width (the CUDA shape)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from evalharness.experiment.config import load as load_config
from evalharness.generation.decoding import decode, row_seed, sample_loop
from evalharness.errors import UserError
from evalharness.generation.fast_decoding import ATTRIBUTE, FastPath
from evalharness.generation.models import load_model
from evalharness.samplers import SAMPLERS
from helpers import padded_contexts, write_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest

SAMPLER_SET = [("greedy", {}), ("pure", {}), ("top_k", {"k": 5}), ("top_p", {"p": 0.9}),
               ("top_k", {"k": 4, "temperature": 0.7})]
NEW = 20
# fixed_shapes: SDPA over the preallocated width adds exactly-zero terms in another order; the
# logits move by ~1e-6 (float32, measured); log-probs stay within this bound.
FIXED_SHAPE_LOGPROB_TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu", compile=True)


@pytest.fixture(scope="module")
def contexts(loaded):
    return padded_contexts(loaded, n=10)  # lengths 5..32: every row but the last left-padded


def seeds(n: int) -> list[int]:
    return [row_seed(0, f"{i:05d}", "fast") for i in range(n)]


def eos_in_the_middle(loaded, contexts) -> int:
    """A token the greedy path emits early in some row, used as EOS so rows stop at different steps."""
    out = sample_loop(loaded.model, contexts, SAMPLERS.get("greedy")(), NEW, None, loaded.pad_id,
                      seeds(len(contexts)), "cpu")
    return out[len(out) // 2].token_ids[3]


def both(loaded, contexts, sampler, fast, eos_id):
    args = (contexts, sampler, NEW, eos_id, loaded.pad_id, seeds(len(contexts)), "cpu")
    return sample_loop(loaded.model, *args), fast(loaded.model, *args)


def test_load_model_compile_attaches_the_fast_path_and_decode_uses_it(loaded, tiny_model_dir, contexts):
    assert isinstance(getattr(loaded.model, ATTRIBUTE), FastPath)
    assert not hasattr(load_model(str(tiny_model_dir), device="cpu").model, ATTRIBUTE)
    fast = getattr(loaded.model, ATTRIBUTE)
    decode(loaded.model, contexts[:3], SAMPLERS.get("pure")(), 4, loaded.eos_id, loaded.pad_id, seeds(3), "cpu")
    assert fast.shape == (3, len(contexts[2]), 4)  # (rows, context width, new tokens): its buffers exist


@pytest.mark.parametrize("name,params", SAMPLER_SET)
def test_static_cache_gives_byte_identical_continuations(loaded, contexts, name, params):
    sampler = SAMPLERS.get(name)(**params)
    eos = eos_in_the_middle(loaded, contexts)
    eager, fast = both(loaded, contexts, sampler, getattr(loaded.model, ATTRIBUTE), eos)
    assert eager == fast  # tokens, both log-prob lists and stopped_by_eos, bit for bit
    assert any(c.stopped_by_eos for c in eager) and not all(len(c.token_ids) == NEW for c in eager)


@pytest.mark.parametrize("name,params", SAMPLER_SET)
def test_fixed_shapes_give_the_same_tokens_and_bounded_logprobs(loaded, contexts, name, params):
    """The shape CUDA graphs replay, run eagerly on CPU (no capture)."""
    sampler = SAMPLERS.get(name)(**params)
    eos = eos_in_the_middle(loaded, contexts)
    eager, fast = both(loaded, contexts, sampler, FastPath(fixed_shapes=True, capture=False), eos)
    assert [c.token_ids for c in eager] == [c.token_ids for c in fast]
    assert [c.stopped_by_eos for c in eager] == [c.stopped_by_eos for c in fast]
    for a, b in zip(eager, fast):
        diffs = [abs(x - y) for x, y in zip(a.logprobs_model + a.logprobs_sampler, b.logprobs_model + b.logprobs_sampler)]
        assert max(diffs, default=0.0) <= FIXED_SHAPE_LOGPROB_TOLERANCE


def test_buffers_are_reused_across_batches_of_one_shape(loaded, contexts):
    """A second batch of the same shape refills the same buffers (a captured graph reads them)."""
    fast, sampler = FastPath(fixed_shapes=True, capture=False), SAMPLERS.get("top_p")(p=0.9)
    first, second = contexts[:4] + contexts[-1:], contexts[5:]  # both as wide as the longest
    fast(loaded.model, first, sampler, NEW, None, loaded.pad_id, seeds(5), "cpu")
    step = fast.step
    eager, again = both(loaded, second, sampler, fast, None)
    assert fast.step is step
    assert [c.token_ids for c in eager] == [c.token_ids for c in again]


def test_compile_with_device_map_is_a_one_line_config_error(tiny_model_dir, corpus_jsonl, tmp_path):
    path = write_experiment(tmp_path / "x.yaml", tiny_model_dir, corpus_jsonl, "[pure]")
    path.write_text(path.read_text().replace("batch_size: 4}", "batch_size: 4, compile: true, device_map: auto}"))
    with pytest.raises(UserError, match="model.compile: cannot be combined with model.device_map"):
        load_config(path)
    path.write_text(path.read_text().replace("compile: true, device_map: auto", "compile: yes please"))
    with pytest.raises(UserError, match="model.compile: must be true or false"):
        load_config(path)


def run_cli(config: Path, out: Path) -> list[dict]:
    from evalharness.cli import main

    assert main(["run", str(config), "--output", str(out)]) == 0
    lines = (out / "top_p-p=0.9" / "generations.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda g: g["prompt_id"])


def test_yaml_with_compile_writes_the_generations_of_the_eager_path(tiny_model_dir, corpus_jsonl, tmp_path):
    samplers = "[greedy, {name: top_p, p: 0.9}]"
    plain = write_experiment(tmp_path / "plain.yaml", tiny_model_dir, corpus_jsonl, samplers)
    compiled = write_experiment(tmp_path / "compiled.yaml", tiny_model_dir, corpus_jsonl, samplers)
    compiled.write_text(compiled.read_text().replace("batch_size: 4}", "batch_size: 4, compile: true}"))
    strip = lambda gens: [{k: v for k, v in g.items() if "time" not in k} for g in gens]  # noqa: E731
    assert strip(run_cli(plain, tmp_path / "plain")) == strip(run_cli(compiled, tmp_path / "compiled"))


def test_gpu_benchmark_script_runs_on_cpu_at_a_tiny_size(tiny_model_dir, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import gpu_fast_path

    monkeypatch.setattr(sys, "argv", ["gpu_fast_path.py", "--model", str(tiny_model_dir), "--device", "cpu",
                                      "--batch", "4", "--context", "6", "--new", "5", "--repeats", "1",
                                      "--dtypes", "float32", "--samplers", "pure,top_k:5"])
    gpu_fast_path.main()
    printed = capsys.readouterr().out
    assert "identical continuations 100.0% of 4" in printed and "x eager forward-only" in printed


def test_unsupported_attention_is_refused():
    from evalharness.generation.fast_decoding import fast_path_for

    class Config:
        _attn_implementation = "flash_attention_2"

    with pytest.raises(UserError, match="model.compile: needs the model's attention"):
        fast_path_for(type("M", (), {"config": Config()})(), "cpu")


def test_the_fixed_shape_step_traces_as_one_graph(loaded, contexts):
    """What a CUDA graph capture needs and CPU can check: the decode step (the model on the static
    buffers) has no host synchronisation or data-dependent Python branch; dynamo's fullgraph
    tracing fails on any (.item(), bool(tensor), a tensor built from host values each call)."""
    from evalharness.generation.decoding import left_pad, model_logits, positions
    from evalharness.generation.fast_decoding import cache_layers

    fast = FastPath(fixed_shapes=True, capture=False)
    with torch.inference_mode():
        ids, mask = left_pad(contexts[:4], loaded.pad_id, "cpu")
        pos = positions(mask)
        first = model_logits(loaded.model, ids, mask, pos)
        step = fast.prepare(loaded.model, cache_layers(first.cache), mask, pos[:, -1:], 8)
        step.load(first.logits[:, -1].argmax(-1))
        traced = torch.compile(step.forward, backend="eager", fullgraph=True)()
        assert torch.equal(traced, step.forward())
