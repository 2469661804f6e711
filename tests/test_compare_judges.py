"""`compare` sets the judge columns of experiments with different generators side by side."""

from __future__ import annotations

from evalharness.report.compare import comparison_markdown


def row(experiment: str, model: str, run: str, **metrics) -> dict:
    return {"experiment": experiment, "folder": f"/r/{experiment}", "model": model, "run": run, "sampler": run,
            "params": {}, "metrics": metrics, "ci": {m: [v - 0.5, v + 0.5] for m, v in metrics.items()}}


def test_judge_columns_across_generators():
    rows = [row("small", "gpt2", "human", judge_perplexity=20.0, coherence=0.5, judge_typicality=4.0),
            row("small", "gpt2", "pure", judge_perplexity=30.0, coherence=0.3, judge_typicality=3.5,
                people_typicality=3.9, huse_judge=0.7),
            row("large", "gpt2-large", "human", judge_perplexity=20.0, coherence=0.5, judge_typicality=4.0),
            row("large", "gpt2-large", "pure", judge_perplexity=24.0, coherence=0.4, judge_typicality=3.8,
                people_typicality=4.1, huse_judge=0.9)]
    header, _, *lines = comparison_markdown(rows).splitlines()[:6]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["experiment", "model", "run", "judge_perplexity", "coherence", "people_typicality",
                       "judge_typicality", "huse_judge"]
    # bold: closest to the human value (none for people_typicality here), HUSE the highest
    large_pure = [c.strip() for c in lines[3].strip("|").split("|")]
    assert large_pure[:4] == ["large", "gpt2-large", "pure", "**24.00 ± 0.50**"]
    assert large_pure[5:] == ["4.100 ± 0.500", "**3.800 ± 0.500**", "**0.900 ± 0.500**"]
