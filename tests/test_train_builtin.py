"""train-builtin: a tiny run loads offline and repeats exactly; the shipped model folder is sound."""

from __future__ import annotations

import json
import math

import pytest

from evalharness.builtin import train as train_builtin
from evalharness.builtin import train_config
from evalharness.builtin.corpora import pydocs

SHIPPED = train_config.DEFAULT_OUTPUT
SAMPLING_KEYS = {"do_sample", "temperature", "top_k", "top_p", "typical_p", "min_p",
                 "epsilon_cutoff", "eta_cutoff", "penalty_alpha", "num_beams", "repetition_penalty"}
TINY = ["--steps", "4", "--warmup-steps", "2", "--eval-every", "2", "--vocab-size", "300",
        "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-positions", "64",
        "--seq-len", "32", "--batch-size", "4", "--max-train-docs", "30", "--max-eval-docs", "5",
        "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    folders = [tmp_path_factory.mktemp(name) for name in ("a", "b")]
    for folder in folders:
        assert train_builtin.main(["--output", str(folder), "--seed", "3", *TINY]) == 0
    return folders


def test_tiny_run_loads_offline(tiny_runs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    folder = tiny_runs[0]
    model = GPT2LMHeadModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert AutoModelForCausalLM.from_pretrained(folder).config.n_embd == 16
    assert tokenizer.eos_token == tokenizer.bos_token == train_config.EOT
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert len(tokenizer) <= model.config.vocab_size


def test_tiny_run_writes_its_log(tiny_runs):
    folder = tiny_runs[0]
    log = json.loads((folder / "training_log.json").read_text())
    assert [r["step"] for r in log["history"]] == [1, 2, 3, 4]
    assert log["config"]["seed"] == 3 and log["corpus"]["train_documents"] == 30
    for split in ("valid", "test"):
        result = log["evaluation"][split]
        assert math.isclose(result["perplexity"], math.exp(result["loss"]))
        assert result["unigram_perplexity"] > 1
    csv_lines = (folder / "loss_curve.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,train_loss,valid_loss") and len(csv_lines) == 5
    assert (folder / "README.md").is_file()


def recomputed(folder, split: str, seq_len: int, max_docs: int | None, train_docs: int | None) -> tuple[float, float]:
    """(model perplexity, add-one unigram perplexity) of `split` recomputed from the saved
    folder alone, independently of train.py: the saved tokenizer through transformers, the
    documents joined by end-of-text, non-overlapping windows of seq_len tokens scored by the
    model's own `labels=` loss, the unigram counts by collections.Counter."""
    from collections import Counter

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()

    def stream(texts):
        ids = [tokenizer.eos_token_id]
        for text in texts:
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return ids

    tokens = stream([text for _, text in pydocs.documents(split)][:max_docs])
    windows = [tokens[i:i + seq_len] for i in range(0, len(tokens) - 1, seq_len)]
    total = 0.0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            total += model(input_ids=ids, labels=ids).loss.item() * (len(window) - 1)
    targets = [t for window in windows for t in window[1:]]
    counts = Counter(stream([text for _, text in pydocs.documents("train")][:train_docs]))
    size, vocab = sum(counts.values()), len(tokenizer)
    unigram = -sum(math.log((counts[t] + 1) / (size + vocab)) for t in targets) / len(targets)
    return math.exp(total / len(targets)), math.exp(unigram)


def test_tiny_run_perplexities_recomputed_from_its_folder(tiny_runs):
    log = json.loads((tiny_runs[0] / "training_log.json").read_text())
    for split in ("valid", "test"):
        model_ppl, unigram_ppl = recomputed(tiny_runs[0], split, 32, 5, 30)
        assert model_ppl == pytest.approx(log["evaluation"][split]["perplexity"], rel=1e-5)
        assert unigram_ppl == pytest.approx(log["evaluation"][split]["unigram_perplexity"], rel=1e-9)


def test_same_seed_gives_identical_weights_and_tokenizer(tiny_runs):
    a, b = tiny_runs
    for name in ("model.safetensors", "tokenizer.json", "config.json", "loss_curve.csv"):
        if name == "loss_curve.csv":  # elapsed seconds differ; losses must not
            strip = lambda p: [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]  # noqa: E731
            assert strip(a / name) == strip(b / name)
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = train_config.TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    rates = [train_builtin.learning_rate(step, config) for step in range(1, 101)]
    assert rates[9] == pytest.approx(1e-3) and rates[0] == pytest.approx(1e-4)
    assert all(x >= y for x, y in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(1e-4)


# --- the shipped model -------------------------------------------------------------------------

def test_shipped_model_loads_offline_and_its_tokenizer_round_trips(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED)
    text = "Return the number of items.\n\n    >>> len([1, 2])  # two\nNaïve café ✓ 日本語"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == train_config.EOT == tokenizer.convert_ids_to_tokens(
        model.config.eos_token_id)
    assert model.config.n_positions >= 64 + 200
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), model.config.vocab_size)


def test_shipped_generation_config_has_no_sampling_defaults():
    assert not SAMPLING_KEYS & set(json.loads((SHIPPED / "generation_config.json").read_text()))


def test_shipped_weights_are_small_and_beat_unigram():
    assert (SHIPPED / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    log = json.loads((SHIPPED / "training_log.json").read_text())
    for split in ("valid", "test"):
        result = log["evaluation"][split]
        assert result["perplexity"] < result["unigram_perplexity"] / 4
