"""Beam search: our batched loop gives exactly the continuations of transformers' generate."""

import pytest
import torch

from evalharness.generation.models import load_model
from evalharness.samplers import SAMPLERS
from evalharness.samplers import beam as beam_module
from helpers import padded_contexts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), "cpu")


def random_contexts(vocab: int, n: int = 7, seed: int = 1) -> list[list[int]]:
    """Contexts of unequal lengths (1 to 11 tokens), so the batch is left-padded."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (int(n),), generator=g).tolist() for n in torch.randint(1, 12, (n,), generator=g)]


def both(beam, loaded, contexts, new, eos):
    ours = beam.search(loaded.model, contexts, new, eos, loaded.pad_id, "cpu")
    reference = beam.search_with_generate(loaded.model, contexts, new, eos, loaded.pad_id, "cpu")
    return ours, reference


@pytest.mark.parametrize("num_beams", [1, 2, 3, 6])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -1.0, 2.0])
def test_same_continuations_as_generate_without_end_of_text(tiny, num_beams, length_penalty):
    beam = SAMPLERS.get("beam")(num_beams=num_beams, length_penalty=length_penalty)
    ours, reference = both(beam, tiny, random_contexts(tiny.model.config.vocab_size), 9, None)
    assert ours == reference
    assert all(len(tokens) == 9 and not stopped for tokens, stopped in ours)


@pytest.fixture(scope="module")
def eos_likely(tiny_model_dir):
    """The tiny model with end-of-text made likely (its tied embedding row scaled), so beams end
    at different steps and the finished slots and the stopping heuristic come into play."""
    loaded = load_model(str(tiny_model_dir), "cpu")
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight[loaded.eos_id] *= 2.5
    return loaded


@pytest.mark.parametrize("num_beams", [1, 2, 4, 7])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -1.0, 2.0])
def test_same_continuations_as_generate_with_end_of_text(eos_likely, num_beams, length_penalty):
    beam = SAMPLERS.get("beam")(num_beams=num_beams, length_penalty=length_penalty)
    contexts = random_contexts(eos_likely.model.config.vocab_size, n=9, seed=2)
    for new in (1, 4, 16):
        ours, reference = both(beam, eos_likely, contexts, new, eos_likely.eos_id)
        assert ours == reference, (new, [(a, b) for a, b in zip(ours, reference) if a != b])


def test_end_of_text_is_reached_in_the_comparison(eos_likely):
    """Guards the test above: some beams end in end-of-text, at different lengths, some not."""
    contexts = random_contexts(eos_likely.model.config.vocab_size, n=9, seed=2)
    found = SAMPLERS.get("beam")(num_beams=4).search(eos_likely.model, contexts, 16, eos_likely.eos_id,
                                                    eos_likely.pad_id, "cpu")
    ended = [len(tokens) for tokens, stopped in found if stopped]
    assert ended and len(set(ended)) > 1 and len(ended) < len(found)


@pytest.mark.parametrize("num_beams", [4, 16])
def test_same_continuations_as_generate_on_the_builtin_model(num_beams):
    loaded = load_model("builtin:pydocs-gpt2-small", "cpu")
    text = ("def read_config(path):\n    \"\"\"Read a YAML file and return", "import os\nimport sys\n\n",
            "class Cache:\n    def __init__(self, size", "for i in range(10):\n    print(", "# Parse the")
    contexts = [loaded.tokenizer(t)["input_ids"] for t in text] + padded_contexts(loaded, 3)
    beam = SAMPLERS.get("beam")(num_beams=num_beams)
    ours, reference = both(beam, loaded, contexts, 16, loaded.eos_id)
    assert ours == reference


def test_decode_chunks_and_log_probs_match_the_generate_path(tiny, monkeypatch):
    """decode(): prompts in chunks of MAX_BEAM_ROWS // num_beams, log-probs by the teacher-forced
    pass, the same Continuations as with the generate search."""
    monkeypatch.setattr(beam_module, "MAX_BEAM_ROWS", 9)
    beam = SAMPLERS.get("beam")(num_beams=3)
    contexts = random_contexts(tiny.model.config.vocab_size, n=7, seed=3)
    ours = beam.decode(tiny.model, contexts, 6, tiny.eos_id, tiny.pad_id, "cpu")
    reference = beam.decode(tiny.model, contexts, 6, tiny.eos_id, tiny.pad_id, "cpu", search=beam.search_with_generate)
    assert ours == reference
