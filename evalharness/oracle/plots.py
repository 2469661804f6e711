"""Plots of an oracle.json (they read only the summary, so they can be redrawn from it)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from evalharness.store import write_atomic

MARK_K = (40, 640)
"""Top-k settings of Holtzman et al. 2019, Table 1, marked on the top-k coverage curve."""
MARK_P = (0.9, 0.95)


def _figure():
    """One figure with one axes, built with the Figure API: no pyplot, no global backend switch
    (the rule of report/plots.py: a library must not change its host's matplotlib state)."""
    fig = Figure(figsize=(7, 4.2))
    return fig, fig.subplots()


def _short(name: str) -> str:
    """A local path as its last two parts (titles must fit); hub ids and builtin names as they are."""
    if name.startswith(("builtin:", "hf:")) or "/" not in name:
        return name
    return "/".join(Path(name).parts[-2:])


def _subtitle(summary: dict) -> str:
    s = summary["settings"]
    context = f"window L={s['context_tokens']}" if s["mode"] == "window" else "whole prefix"
    return f"{_short(s['model'])} on {_short(s['source'])} · {context} · {summary['count']:,} tokens"


def plot_k_histogram(summary: dict, path: Path) -> None:
    hist, k = summary["histograms"]["k"], summary["k"]
    edges, fractions = hist["edges"], hist["fractions"]
    fig, ax = _figure()
    ax.bar(edges[:-1], fractions, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
           color="#4c72b0", edgecolor="white")
    ax.set_xscale("log", base=2)
    ax.axvline(k["median"], color="#c44e52", linestyle="--", label=f"median k = {k['median']:g}")
    ax.axvline(k["mean"], color="#dd8452", linestyle=":", label=f"mean k = {k['mean']:.1f}")
    ax.set_xlabel("rank k of the human token (log scale; bins [2^j, 2^(j+1)))")
    ax.set_ylabel("fraction of human tokens")
    ax.set_title("Smallest top-k that allows the human token\n" + _subtitle(summary), fontsize=10)
    ax.legend()
    _save(fig, path)


def plot_p_histogram(summary: dict, path: Path) -> None:
    hist, p = summary["histograms"]["p"], summary["p"]
    edges = hist["edges"]
    fig, ax = _figure()
    ax.bar(edges[:-1], hist["fractions"], width=edges[1] - edges[0], align="edge", color="#55a868",
           edgecolor="white")
    ax.axvline(p["median"], color="#c44e52", linestyle="--", label=f"median p = {p['median']:.2f}")
    ax.axvline(p["mean"], color="#dd8452", linestyle=":", label=f"mean p = {p['mean']:.2f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("p = probability mass of tokens ranked at or above the human token")
    ax.set_ylabel("fraction of human tokens")
    ax.set_title("Cumulative probability up to and including the human token\n" + _subtitle(summary), fontsize=10)
    ax.legend(loc="upper left")
    _save(fig, path)


def plot_topk_coverage(summary: dict, path: Path) -> None:
    curve = summary["coverage"]["top_k"]
    fig, ax = _figure()
    ax.plot(curve["K"], curve["fraction"], marker=".", color="#4c72b0")
    _mark(ax, curve["K"], curve["fraction"], MARK_K, "K")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_xlabel("K (top-k with k = K; log scale)")
    ax.set_ylabel("fraction of human tokens allowed (k <= K)")
    ax.set_title("Top-k coverage of human text\n" + _subtitle(summary), fontsize=10)
    _save(fig, path)


def plot_topp_coverage(summary: dict, path: Path) -> None:
    curve = summary["coverage"]["top_p"]
    fig, ax = _figure()
    ax.plot(curve["P"], curve["fraction"], color="#55a868")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="y = P (what a calibrated model gives)")
    _mark(ax, curve["P"], curve["fraction"], MARK_P, "P")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_xlabel("P (top-p with p = P)")
    ax.set_ylabel("fraction of human tokens allowed\n(mass strictly above < P)")
    ax.set_title("Top-p coverage of human text\n" + _subtitle(summary), fontsize=10)
    ax.legend(loc="upper left")
    _save(fig, path)


def _mark(ax, xs: list, ys: list, marks: tuple, name: str) -> None:
    """Dots on the curve at the marked settings, their values in a box at the lower right."""
    lines = []
    for x in marks:
        if x in xs:
            y = ys[xs.index(x)]
            ax.plot([x], [y], "o", color="#c44e52")
            lines.append(f"{name} = {x:g}: {y:.1%} allowed")
    if lines:
        ax.text(0.97, 0.05, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom",
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


PLOTS = {
    "oracle_k_hist.png": plot_k_histogram,
    "oracle_p_hist.png": plot_p_histogram,
    "oracle_topk_coverage.png": plot_topk_coverage,
    "oracle_topp_coverage.png": plot_topp_coverage,
}


def write_plots(folder: Path, summary: dict) -> list[Path]:
    """Write every plot into folder; the paths written."""
    paths = []
    for name, plot in PLOTS.items():
        plot(summary, Path(folder) / name)
        paths.append(Path(folder) / name)
    return paths
