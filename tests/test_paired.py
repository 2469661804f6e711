"""Paired-bootstrap 'best' marks (report.paired) on constructed data, and how the tables show them."""

import json

import numpy as np
import pytest

from evalharness.report import latex
from evalharness.report.compare import comparison_markdown
from evalharness.report.html import summary_section
from evalharness.report.paired import comparisons, with_comparisons
from evalharness.report.summary import best_runs, to_markdown, write_summary
from evalharness.scorers.base import bootstrap_ci

N, RESAMPLES = 200, 200


def row(run, per_prompt, metric, seed):
    """A summary row scored as the scorers score: the mean over prompts, its interval and draws
    from the prompt-index stream every run shares (the same bootstrap seed)."""
    ci = bootstrap_ci(lambda idx: {metric: float(per_prompt[idx].mean())}, len(per_prompt), RESAMPLES, seed)
    return {"run": run, "sampler": run, "params": {}, "metrics": {metric: float(per_prompt.mean())},
            "ci": {metric: list(ci[metric])}, "draws": {metric: list(ci.draws[metric])}}


def marked(rows, metric):
    return best_runs(with_comparisons(rows), metric)


def test_a_true_gap_is_separated_and_one_distribution_shares_the_mark():
    """mauve (higher is better) of two runs over 200 prompts, 100 seeded repetitions: runs 0.5 sd
    apart are told apart every time; runs drawn from one distribution share the mark in >= 90."""
    shared = separated = 0
    for rep in range(100):
        rng = np.random.default_rng(rep)
        a, b, c = rng.normal(0, 1, N), rng.normal(0, 1, N), rng.normal(-0.5, 1, N)
        rows = [row("human", rng.normal(0, 1, N), "mauve", rep), row("a", a, "mauve", rep),
                row("b", b, "mauve", rep), row("worse", c, "mauve", rep)]
        marks = marked(rows, "mauve")
        shared += {"a", "b"} <= marks
        separated += "worse" not in marks
    assert shared >= 90 and separated == 100, (shared, separated)


def test_pairing_separates_what_overlapping_intervals_hide():
    """Two runs that share a large per-prompt effect (some prompts are easy for every sampler)
    and differ by a small constant: their own intervals overlap, the paired difference does not."""
    rng = np.random.default_rng(0)
    prompt_effect = rng.normal(0, 3, N)
    better = row("better", prompt_effect + rng.normal(0.15, 0.3, N), "mauve", 1)
    worse = row("worse", prompt_effect + rng.normal(0.0, 0.3, N), "mauve", 1)
    assert worse["ci"]["mauve"][1] > better["ci"]["mauve"][0]  # the intervals overlap
    entry = comparisons([better, worse])["mauve"]
    assert entry["best"] == "better" and not entry["runs"]["worse"]["shares_best"]
    low, high = entry["runs"]["worse"]["gap_ci"]
    assert 0 < low <= entry["runs"]["worse"]["gap"] <= high


def test_closer_to_human_compares_distances_to_the_human_value():
    """perplexity (closer_to_human): runs on either side of human at the same distance share
    the mark; a run far away does not; the gap is the extra distance."""
    rng = np.random.default_rng(3)
    human = rng.normal(10, 1, N)
    rows = [row("human", human, "perplexity", 5), row("above", human + 0.2 + rng.normal(0, 0.05, N), "perplexity", 5),
            row("below", human - 0.2 + rng.normal(0, 0.05, N), "perplexity", 5),
            row("far", human + 1.0 + rng.normal(0, 0.05, N), "perplexity", 5)]
    result = comparisons(rows)["perplexity"]
    assert result["best"] in ("above", "below") and "human" not in result["runs"]
    assert result["runs"]["above"]["shares_best"] and result["runs"]["below"]["shares_best"]
    far = result["runs"]["far"]
    assert not far["shares_best"]
    assert far["gap"] == pytest.approx(abs(rows[3]["metrics"]["perplexity"] - rows[0]["metrics"]["perplexity"])
                                       - min(abs(r["metrics"]["perplexity"] - rows[0]["metrics"]["perplexity"])
                                             for r in rows[1:3]))


def test_without_draws_only_the_exact_best_is_marked():
    rows = [{"run": "human", "metrics": {"mauve": 1.0}, "ci": {}},
            {"run": "a", "metrics": {"mauve": 0.8}, "ci": {}}, {"run": "b", "metrics": {"mauve": 0.79}, "ci": {}}]
    assert best_runs(rows, "mauve") == {"a"}
    rng = np.random.default_rng(1)
    some = [row("human", rng.normal(0, 1, N), "mauve", 2), row("a", rng.normal(0, 1, N), "mauve", 2),
            {"run": "b", "sampler": "b", "params": {}, "metrics": {"mauve": -5.0}, "ci": {}}]
    entry = comparisons(some)["mauve"]["runs"]["b"]  # one side without draws: no interval
    assert entry["gap_ci"] is None and not entry["shares_best"]


@pytest.fixture
def tied_rows():
    """a and b from one distribution (tied), worse 0.5 sd below, on mauve and mean_length."""
    rng = np.random.default_rng(11)
    rows = []
    for run, shift in (("human", 0.0), ("a", 0.0), ("b", 0.02), ("worse", -0.5)):
        values = rng.normal(shift, 1, N)
        mauve, length = row(run, values, "mauve", 4), row(run, values + 30, "mean_length", 4)
        for part in ("metrics", "ci", "draws"):
            mauve[part].update(length[part])
        rows.append(mauve)
    return rows


def test_summary_files_carry_the_comparisons_and_mark_ties(tied_rows, tmp_path):
    written = write_summary(tmp_path, tied_rows)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == json.loads(json.dumps(written)) and all("draws" not in r for r in saved)
    by_run = {r["run"]: r for r in saved}
    assert "vs_best" in by_run["human"] and by_run["human"]["vs_best"] == {}
    best = by_run["a"]["vs_best"]["mauve"]["best"]
    assert by_run[best]["vs_best"]["mauve"] == {"best": best, "gap": 0.0, "gap_ci": [0.0, 0.0], "shares_best": True}
    assert {r["run"] for r in saved[1:] if r["vs_best"]["mauve"]["shares_best"]} == {"a", "b"}
    low, high = by_run["worse"]["vs_best"]["mauve"]["gap_ci"]
    assert 0 < low < high

    markdown = (tmp_path / "summary.md").read_text()
    lines = {line.split(" | ")[0][2:]: line for line in markdown.splitlines() if line.startswith("| ")}
    assert lines["a"].count("**") == 4 and lines["b"].count("**") == 4 and "**" not in lines["worse"]
    assert "paired-bootstrap interval of its difference from the best run" in markdown
    assert to_markdown(saved) == to_markdown(with_comparisons(tied_rows))  # the report reads the same marks


def test_latex_html_and_compare_use_the_paired_marks(tied_rows):
    rows = with_comparisons(tied_rows)
    tex = latex.table_document([(None, rows)], label="t", with_ci=True)
    body = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line and "Method" not in line}
    assert r"\textbf" in body["a"] and r"\textbf" in body["b"] and r"\textbf" not in body["worse"]
    assert "paired-bootstrap interval of the difference" in tex
    html = summary_section(rows)
    assert html.count("<strong>") == 4 and "paired-bootstrap interval" in html
    blocks = [{"experiment": e, "folder": f"/x/{e}", "model": "m", **r} for e in ("one", "two") for r in rows]
    markdown = comparison_markdown(blocks)
    best = rows[1]["vs_best"]["mauve"]["best"]
    other = "b" if best == "a" else "a"
    paired = [line for line in markdown.splitlines() if line.startswith("| one | mauve |")]
    assert len(paired) == 1 and paired[0].startswith(f"| one | mauve | {best} | {other} (")
    assert "worse" not in paired[0]
