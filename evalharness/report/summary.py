"""summary.{json,csv,md}: one row per run, human first, value ± 95% CI half-width."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from evalharness.scorers import SCORERS
from evalharness.scorers.base import CLOSER, HIGHER, LOWER
from evalharness.store import write_atomic, write_json

HEADLINE = ("perplexity", "perplexity_sampler", "self_bleu", "zipf", "repetition", "repetition_paper", "huse",
            "distinct_4", "diversity", "mauve", "mean_length", "eos_rate", "human_coverage",
            "human_perplexity_sampler", "judge_perplexity", "coherence", "people_typicality", "judge_typicality",
            "huse_judge", "judge_agreement_spearman")
"""Holtzman et al.'s Table 1 order first (perplexity, Self-BLEU, Zipf, repetition, HUSE); the judge
columns last, people's rating beside the judge's (columns only appear when some run has them)."""
PERCENT = ("repetition", "repetition_paper", "eos_rate", "human_coverage")


def metric_directions() -> dict[str, str]:
    directions: dict[str, str] = {}
    for name in SCORERS.names():
        directions.update(SCORERS.get(name).metrics)
    return directions


def write_summary(root: Path, rows: list[dict], cfg=None) -> None:
    write_json(root / "summary.json", rows)
    write_atomic(root / "summary.csv", to_csv(rows))
    title = f"# {cfg.name}\n\n{cfg.description}\n\n" if cfg is not None else ""
    write_atomic(root / "summary.md", title + to_markdown(rows))


def all_metrics(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        seen += [m for m in row["metrics"] if m not in seen]
    return seen


def to_csv(rows: list[dict]) -> str:
    metrics = all_metrics(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "sampler", "params"] + [c for m in metrics for c in (m, f"{m}_low", f"{m}_high")])
    for row in rows:
        params = ";".join(f"{k}={v}" for k, v in row["params"].items())
        cells = []
        for m in metrics:
            low, high = row["ci"].get(m, (None, None))
            cells += [_plain(row["metrics"].get(m)), _plain(low), _plain(high)]
        writer.writerow([row["run"], row["sampler"], params] + cells)
    return out.getvalue()


def _plain(value) -> str:
    return "" if value is None else repr(float(value))


def best_runs(rows: list[dict], metric: str) -> set[str]:
    """Runs to mark: closest to the human value, or the best one for higher/lower metrics."""
    direction = metric_directions().get(metric, CLOSER)
    human = next((r["metrics"].get(metric) for r in rows if r["run"] == "human"), None)
    candidates = [(r["run"], r["metrics"][metric]) for r in rows
                  if r["run"] != "human" and _finite(r["metrics"].get(metric))]
    if not candidates:
        return set()
    if direction == HIGHER:
        target = max(v for _, v in candidates)
    elif direction == LOWER:
        target = min(v for _, v in candidates)
    elif _finite(human):
        gap = min(abs(v - human) for _, v in candidates)
        return {run for run, v in candidates if abs(v - human) == gap}
    else:
        return set()
    return {run for run, v in candidates if v == target}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def format_value(metric: str, value, ci=None) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"  # e.g. human text outside a truncating sampler's support
    if not _finite(value):
        return "—"
    scale, unit = (100.0, "%") if metric in PERCENT else (1.0, "")
    text = f"{value * scale:.{_digits(value * scale)}f}{unit}"
    if ci is not None and all(_finite(c) for c in ci):
        half = (ci[1] - ci[0]) / 2 * scale
        text += f" ± {half:.{_digits(value * scale)}f}"
    return text


def _digits(value: float) -> int:
    magnitude = abs(value)
    return 2 if magnitude >= 10 else 3 if magnitude >= 0.01 or magnitude == 0 else 4


def to_markdown(rows: list[dict]) -> str:
    metrics = [m for m in HEADLINE if any(m in r["metrics"] for r in rows)]
    marks = {m: best_runs(rows, m) for m in metrics}
    lines = ["| run | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for row in rows:
        cells = []
        for m in metrics:
            cell = format_value(m, row["metrics"].get(m), row["ci"].get(m))
            cells.append(f"**{cell}**" if row["run"] in marks[m] else cell)
        lines.append(f"| {row['run'].replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    legend = ("\nValues ± half-width of the 95% bootstrap interval over prompts (HUSE: over rated texts). "
              "Bold: per column, the run closest to the human value (MAUVE, HUSE, human_coverage: the highest; "
              "human_perplexity_sampler: the lowest). Percentages: " + ", ".join(m for m in PERCENT if m in metrics)
              + ". ∞: a human token lies outside the sampler's support. —: not defined for that row.\n")
    return "\n".join(lines) + "\n" + legend
