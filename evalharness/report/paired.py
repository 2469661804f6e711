"""Which runs a table may call best: paired-bootstrap differences from the best run.

Every scorer resamples the prompts from one stream (scorers.base.bootstrap_draws: same n, same
seed for every run), so resample b of any two runs saw the same prompts and the difference of
their values on it is a draw of the paired bootstrap of the difference (Efron & Tibshirani 1993,
ch. 16: the paired design removes the prompt-to-prompt variation the runs share). Per metric,
the best run is the one nearest the ideal — highest (`higher`), lowest (`lower`) or nearest the
human value (`closer_to_human`) — and every run's *gap* is how much further from the ideal it
is: best − value, value − best, or |value − human| − |best − human| (the human row resampled on
the same prompts). A run shares the best mark when the 95% percentile interval of its gap
includes 0: with these prompts it cannot be told apart from the best.
"""

from __future__ import annotations

import math

import numpy as np

from evalharness.records import HUMAN_RUN
from evalharness.scorers import SCORERS
from evalharness.scorers.base import CLOSER, HIGHER, LOWER

LEVEL = 0.95


def metric_directions() -> dict[str, str]:
    directions: dict[str, str] = {}
    for name in SCORERS.names():
        directions.update(SCORERS.get(name).metrics)
    return directions


def with_comparisons(rows: list[dict], level: float = LEVEL) -> list[dict]:
    """The rows without their bootstrap `draws`, each with `vs_best`: metric -> {best, gap,
    gap_ci, shares_best} for every metric some run has draws of (the others keep the plain rule
    of summary.best_runs: the exact best value)."""
    found = comparisons(rows, level)
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k != "draws"}
        row["vs_best"] = {metric: entry["runs"][row["run"]] | {"best": entry["best"]}
                          for metric, entry in found.items() if row["run"] in entry["runs"]}
        out.append(row)
    return out


def comparisons(rows: list[dict], level: float = LEVEL) -> dict[str, dict]:
    """metric -> {"best": run, "runs": run -> {gap, gap_ci, shares_best}} (human row excluded)."""
    directions = metric_directions()
    metrics = dict.fromkeys(m for row in rows for m in (row.get("draws") or {}))
    out = {}
    for metric in metrics:
        scored = distances(rows, metric, directions.get(metric, CLOSER))
        if scored:
            out[metric] = compare_to_best(scored, level)
    return out


def distances(rows: list[dict], metric: str, direction: str) -> dict[str, tuple[float, np.ndarray | None]]:
    """run -> (distance from the ideal, the same on each resample or None): −value (higher),
    value (lower), |value − human| (closer_to_human); runs with a non-finite value left out."""
    human = next((r for r in rows if r["run"] == HUMAN_RUN), None)
    human_value = human["metrics"].get(metric) if human else None
    if direction == CLOSER and not _finite(human_value):
        return {}
    human_draws = _draws(human, metric) if human else None
    sign = -1.0 if direction == HIGHER else 1.0
    out = {}
    for row in rows:
        value = row["metrics"].get(metric)
        if row["run"] == HUMAN_RUN or not _finite(value):
            continue
        draws = _draws(row, metric)
        if direction in (HIGHER, LOWER):
            out[row["run"]] = (sign * value, None if draws is None else sign * draws)
        else:
            paired = None if draws is None or human_draws is None else np.abs(draws - human_draws)
            out[row["run"]] = (abs(value - human_value), paired)
    return out


def compare_to_best(scored: dict[str, tuple[float, np.ndarray | None]], level: float) -> dict:
    """The best run (smallest distance; the first in row order on ties) and each run's gap from
    it with the percentile interval of the paired gaps. Without draws on either side the gap has
    no interval, and only an exactly equal value shares the mark."""
    best = min(scored, key=lambda run: scored[run][0])
    best_value, best_draws = scored[best]
    tail = (1.0 - level) / 2.0 * 100.0
    runs = {}
    for run, (value, draws) in scored.items():
        gap, interval = value - best_value, None
        if draws is not None and best_draws is not None and len(draws) == len(best_draws):
            gaps = draws - best_draws
            gaps = gaps[np.isfinite(gaps)]
            if gaps.size:
                interval = [float(x) for x in np.percentile(gaps, [tail, 100.0 - tail])]
        shares = gap == 0 if interval is None else interval[0] <= 0.0 <= interval[1]
        runs[run] = {"gap": float(gap), "gap_ci": interval, "shares_best": bool(shares)}
    return {"best": best, "runs": runs}


def _draws(row: dict, metric: str) -> np.ndarray | None:
    values = (row.get("draws") or {}).get(metric)
    return None if values is None else np.asarray(values, dtype=float)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
