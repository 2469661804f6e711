"""The oracle's statistics: quantiles, histograms and coverage curves of ranks and masses."""

from __future__ import annotations

import numpy as np

from evalharness.report.oracle_coverage import topk_allows, topp_allows

QUANTILES = (10, 25, 75, 90, 95, 99)
P_GRID = tuple(round(i / 100, 2) for i in range(1, 101))
P_HIST_BINS = 20
def describe(values, ranks: bool = False) -> dict:
    """min, max, mean, median, std and the QUANTILES (numpy linear interpolation); with ranks,
    whole numbers are written as ints."""
    values = np.asarray(values, dtype=np.float64)
    num = _num if ranks else float
    return {"min": num(values.min()), "max": num(values.max()), "mean": float(values.mean()),
            "median": num(np.median(values)), "std": float(values.std()),
            "quantiles": {str(q): num(np.percentile(values, q)) for q in QUANTILES}}


def _num(value) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value


def k_grid(vocab_size: int) -> list[int]:
    """About 60 log-spaced K from 1 to the vocabulary size, plus the usual round values."""
    grid = {int(round(x)) for x in np.geomspace(1, vocab_size, 61)}
    grid |= {k for k in (2, 3, 5, 10, 20, 40, 50, 100, 200, 500, 640, 1000) if k <= vocab_size}
    return sorted(grid | {vocab_size})


def k_histogram(rank, vocab_size: int) -> dict:
    """Bins [1, 2), [2, 4), [4, 8), ..., the last one ending at vocab_size + 1: the first bin is rank 1."""
    edges = [1]
    while edges[-1] * 2 <= vocab_size:
        edges.append(edges[-1] * 2)
    edges.append(vocab_size + 1)
    counts, _ = np.histogram(rank, bins=edges)
    return {"edges": edges, "counts": counts.tolist(), "fractions": (counts / len(rank)).tolist(),
            "bins": "edges[i] <= k < edges[i+1]"}


def p_histogram(p) -> dict:
    counts, edges = np.histogram(np.clip(p, 0.0, 1.0), bins=P_HIST_BINS, range=(0.0, 1.0))
    return {"edges": [round(e, 4) for e in edges.tolist()], "counts": counts.tolist(),
            "fractions": (counts / len(p)).tolist(), "bins": "edges[i] <= p < edges[i+1]; the last bin includes 1"}


def coverage(rank, mass_above, vocab_size: int) -> dict:
    """The fraction of human tokens each top-k / top-p setting allows (rules in the docstring)."""
    ks, ps = k_grid(vocab_size), list(P_GRID)
    return {
        "top_k": {"K": ks, "fraction": [float(np.mean(topk_allows(rank, k))) for k in ks],
                  "rule": "allowed iff k <= K"},
        "top_p": {"P": ps, "fraction": [float(np.mean(topp_allows(mass_above, p))) for p in ps],
                  "rule": "allowed iff mass_above < P (the mass strictly above the token)"},
    }


def summarize(columns: dict, vocab_size: int) -> dict:
    """Everything oracle.json holds except the settings."""
    rank, p = columns["rank"], columns["p"]
    return {"count": int(len(rank)), "k": describe(rank, ranks=True), "p": describe(p),
            "histograms": {"k": k_histogram(rank, vocab_size), "p": p_histogram(p)},
            "coverage": coverage(rank, columns["mass_above"], vocab_size)}
