"""The judge scorers under torchrun: two ranks share the judge's batches and write the bytes of
one process (see test_parallel.py for why both sides run with one thread)."""

from __future__ import annotations

from helpers import build_tiny_model, write_experiment
from test_parallel import result_files, run_cli


def test_two_ranks_share_the_judges_batches(tiny_model_dir, corpus_jsonl, tmp_path):
    judge = build_tiny_model(tmp_path / "judge", seed=3)
    scorers = (f"[{{name: judge_perplexity, model: {judge}, batch_size: 2}}, "
               f"{{name: judge_typicality, model: {judge}, batch_size: 2, template: 'Text: {{text}} Rating:'}}]")
    yaml_path = write_experiment(tmp_path / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[pure]",
                                 scorers=scorers, num_prompts=6)
    one, two = tmp_path / "one", tmp_path / "two"
    for ranks, out in ((1, one), (2, two)):
        result = run_cli(ranks, "run", yaml_path, "--output", out)
        assert result.returncode == 0, result.stderr
    assert result_files(two) == result_files(one)
    cached = sorted(p.relative_to(one) for p in (one / "cache" / "judge").rglob("*.json"))
    assert len(cached) == 4  # judge NLL and ratings of human and pure
    assert sorted(p.relative_to(two) for p in (two / "cache" / "judge").rglob("*.json")) == cached
    assert all((one / p).read_bytes() == (two / p).read_bytes() for p in cached)
    assert (two / "pure" / "judge_typicality.jsonl").is_file()
