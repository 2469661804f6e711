"""What an oracle folder says about a sampler: the share of human tokens its support allows.

The report reads it (report.html shows each run's human coverage beside the oracle's answer for
the same sampler); the oracle command uses the same two rules for its coverage curves. It lives
here, below both, because the report must not import the oracle stage (which sits above the
experiment stage). Rules and definitions: `evalharness.oracle`'s docstring."""

from __future__ import annotations

import json
from pathlib import Path

def topk_allows(rank, k: int):
    """Whether top-k with k = K keeps the true token (see the module docstring)."""
    return rank <= k


def topp_allows(mass_above, p: float):
    """Whether top-p with p = P keeps the true token: the mass strictly above it is < P."""
    return mass_above < p


def support_rule(sampler: str, params: dict) -> tuple[str, float] | None:
    """Which oracle coverage answers "how much human text does this sampler allow?":
    ("all", 1) for pure and temperature sampling and any interpolated sampler (every token is
    allowed), ("top_k", K) for top_k at any temperature (temperature does not reorder tokens),
    ("top_p", P) for top_p at temperature 1; None where the oracle's ranks cannot say."""
    if params.get("interpolation", 0.0) > 0 or sampler in ("pure", "temperature"):
        return ("all", 1.0)
    if sampler == "top_k":
        return ("top_k", params["k"])
    if sampler == "top_p" and params.get("temperature", 1.0) == 1.0:
        return ("top_p", params["p"])
    return None


def sampler_coverage(summary: dict, columns: dict | None, sampler: str, params: dict) -> float | None:
    """The share of the oracle's tokens the sampler allows: exact from the per-token columns
    (oracle_tokens.jsonl) when present, else from oracle.json's coverage curves when the
    sampler's k or p is on their grid."""
    import numpy as np

    rule = support_rule(sampler, params)
    if rule is None or rule[0] == "all":
        return None if rule is None else 1.0
    kind, value = rule
    if columns is not None:
        allowed = (topk_allows(np.asarray(columns["rank"]), value) if kind == "top_k"
                   else topp_allows(np.asarray(columns["mass_above"]), value))
        return float(np.mean(allowed))
    curve = (summary.get("coverage") or {}).get(kind) or {}
    grid = curve.get("K" if kind == "top_k" else "P") or []
    return float(curve["fraction"][grid.index(value)]) if value in grid else None


def read_token_columns(folder: Path) -> dict | None:
    """rank and mass_above of every token in an oracle folder's oracle_tokens.jsonl (None if absent)."""
    path = Path(folder) / "oracle_tokens.jsonl"
    if not path.is_file():
        return None
    rank, mass_above = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rank.append(record["rank"])
            mass_above.append(record["mass_above"])
    return {"rank": rank, "mass_above": mass_above}
