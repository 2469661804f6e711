"""plots/*.png from a results folder's summary rows and generations (matplotlib, Agg).

Figures are built with matplotlib.figure.Figure, never pyplot: no global backend switch, no
figure registry to leak, nothing shown on screen. Every PNG is rendered in memory and then
written atomically.

- <sampler>-<param>.png: each headline metric against a sampler parameter varied in the grid
  (log x axis for top-k's k and for parameters spanning a factor >= 10), 95% interval bands,
  the human value as a dashed horizontal line with its interval shaded (after Holtzman et
  al. 2019, Figures 4-7).
- zipf.png: rank-frequency of token counts on log-log axes, human against one run per sampler
  family (the one whose Zipf coefficient is closest to the human's).
- repetition.png: share of generations ending in a repetition loop, per run, with intervals.
- logprobs.png: per-token log-probability under the model, human text and every run.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from evalharness.records import HUMAN_RUN, Generation
from evalharness.report.summary import HEADLINE, PERCENT
from evalharness.store import write_atomic

HUMAN_COLOR = "#222222"
DPI = 110
MAX_ZIPF_RUNS = 7
LEGEND_COLUMNS = 5
MAX_VIOLIN_POINTS = 20000
LOG_AXIS_PARAMS = ("k", "num_beams")
METRIC_LABELS = {
    "perplexity": "perplexity (model)", "perplexity_sampler": "perplexity (sampler)",
    "self_bleu": "Self-BLEU", "zipf": "Zipf coefficient", "repetition": "repetition (%)",
    "repetition_paper": "repetition, caption rule (%)", "distinct_4": "distinct-4",
    "diversity": "diversity", "mauve": "MAUVE", "mean_length": "mean length (tokens)",
    "eos_rate": "EOS rate (%)", "huse": "HUSE", "human_coverage": "human tokens allowed (%)",
    "human_perplexity_sampler": "perplexity of human text (sampler)",
}


@dataclass(frozen=True)
class Sweep:
    """Runs of one sampler that differ in one numeric parameter."""

    sampler: str
    param: str
    series: tuple[tuple[str, tuple[dict, ...]], ...]
    """(label of the other parameters' values, rows sorted by the parameter) per line."""
    log_x: bool

    @property
    def filename(self) -> str:
        return safe_name(f"{self.sampler}-{self.param}") + ".png"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("._") or "plot"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sweeps(rows: Sequence[dict]) -> list[Sweep]:
    """Every (sampler, numeric parameter) that takes at least two values in the grid."""
    families: dict[str, list[dict]] = {}
    for row in rows:
        if row["run"] != HUMAN_RUN:
            families.setdefault(row["sampler"], []).append(row)
    found = []
    for sampler, group in families.items():
        names = [p for p in group[0]["params"] if all(_number(r["params"].get(p)) for r in group)]
        for param in names:
            values = sorted({float(r["params"][param]) for r in group})
            if len(values) < 2:
                continue
            varying = [k for k in group[0]["params"] if k != param
                       and len({repr(r["params"].get(k)) for r in group}) > 1]
            series: dict[str, list[dict]] = {}
            for row in group:
                others = [f"{k}={row['params'].get(k)}" for k in varying]
                series.setdefault(", ".join(others), []).append(row)
            ordered = tuple((label, tuple(sorted(rs, key=lambda r: r["params"][param])))
                            for label, rs in series.items())
            log_x = values[0] > 0 and (param in LOG_AXIS_PARAMS or values[-1] / values[0] >= 10)
            found.append(Sweep(sampler, param, ordered, log_x))
    return found


def scaled(metric: str, value):
    return value * 100.0 if metric in PERCENT and _number(value) else value


def sweep_metrics(sweep: Sweep, human: dict | None) -> list[str]:
    rows = [r for _, rs in sweep.series for r in rs] + ([human] if human else [])
    return [m for m in HEADLINE if any(_number(r["metrics"].get(m)) for r in rows)]


def sweep_figure(sweep: Sweep, human: dict | None):
    """One panel per headline metric against the swept parameter."""
    from matplotlib.figure import Figure

    metrics = sweep_metrics(sweep, human)
    ncols = min(4, max(1, len(metrics)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    legend_rows = math.ceil((len(sweep.series) + 1) / LEGEND_COLUMNS)
    width, height = 3.4 * ncols + 0.3, 2.7 * nrows + 0.65 + 0.25 * legend_rows
    fig = Figure(figsize=(width, height), dpi=DPI)
    # Fixed margins (in inches) rather than constrained layout: a grid of equal panels needs no
    # solver, and the solver doubled the time to draw these figures.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, top=1 - 0.55 / height,
                        bottom=(0.7 + 0.25 * legend_rows) / height, wspace=0.32, hspace=0.55)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        draw_sweep_panel(ax, sweep, metric, human)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(labels), LEGEND_COLUMNS), frameon=False)
    fig.suptitle(f"{sweep.sampler}: headline metrics against {sweep.param}", fontweight="bold", y=1 - 0.12 / height)
    return fig


def draw_sweep_panel(ax, sweep: Sweep, metric: str, human: dict | None) -> None:
    for label, rows in sweep.series:
        xs = np.array([float(r["params"][sweep.param]) for r in rows])
        ys = np.array([_or_nan(scaled(metric, r["metrics"].get(metric))) for r in rows])
        lows, highs = zip(*[_ci(metric, r) for r in rows])
        line, = ax.plot(xs, ys, marker="o", markersize=4, label=label or sweep.sampler)
        if np.isfinite(lows).any():
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    value = _or_nan(scaled(metric, human["metrics"].get(metric))) if human else math.nan
    if math.isfinite(value):
        ax.axhline(value, color=HUMAN_COLOR, linestyle="--", linewidth=1.2, label="human")
        low, high = _ci(metric, human)
        if math.isfinite(low):
            ax.axhspan(low, high, color=HUMAN_COLOR, alpha=0.08, linewidth=0)
    style_axes(ax, sweep, metric)


def style_axes(ax, sweep: Sweep, metric: str) -> None:
    """Log x with ticks at the grid's values (k = 1, 5, 40 rather than powers of ten), log y for
    perplexities spanning a factor > 10, no offset notation, flat data given a visible range."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator, ScalarFormatter

    values = sorted({float(r["params"][sweep.param]) for _, rows in sweep.series for r in rows})
    if sweep.log_x:
        ax.set_xscale("log")
        if len(values) <= 8:
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    low, high = ax.get_ylim()
    data = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), dtype=float) if np.isfinite(v)]
    if metric.startswith("perplexity") and data and min(data) > 0 and max(data) / min(data) > 10:
        ax.set_yscale("log")
        decades = math.log10(max(data) / min(data))
        subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0, 3.0) if decades <= 3 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(formatter)
        if data and max(data) - min(data) < 1e-9 * max(1.0, abs(max(data))) and high - low < 1e-6:
            centre = data[0]
            ax.set_ylim(*(sorted((centre * 0.95, centre * 1.05)) if centre else (-0.05, 1.0)))
    ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
    ax.set_xlabel(sweep.param)
    ax.grid(True, alpha=0.3)


def _or_nan(value) -> float:
    return float(value) if _number(value) else math.nan


def _ci(metric: str, row: dict) -> tuple[float, float]:
    ci = row.get("ci", {}).get(metric)
    if ci is None or len(ci) != 2 or not all(_number(c) for c in ci):
        return math.nan, math.nan
    return float(scaled(metric, ci[0])), float(scaled(metric, ci[1]))


# --- Zipf ------------------------------------------------------------------------------------

def rank_counts(generations: Sequence[Generation]) -> np.ndarray:
    """Token counts over all generations (trailing end-of-text dropped), most frequent first."""
    ids = [np.asarray(g.content_ids, dtype=np.int64) for g in generations]
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    _, counts = np.unique(flat, return_counts=True)
    return np.sort(counts)[::-1]


def zipf_runs(rows: Sequence[dict]) -> list[str]:
    """One run per sampler family: the one whose Zipf coefficient is closest to the human's
    (the family's first run when there is no Zipf value)."""
    human = next((r for r in rows if r["run"] == HUMAN_RUN), None)
    target = human["metrics"].get("zipf") if human else None
    chosen: dict[str, tuple[float, str]] = {}
    for i, row in enumerate(r for r in rows if r["run"] != HUMAN_RUN):
        value = row["metrics"].get("zipf")
        gap = abs(value - target) if _number(value) and _number(target) else math.inf
        key = (gap, i)
        if row["sampler"] not in chosen or key < chosen[row["sampler"]][0]:
            chosen[row["sampler"]] = (key, row["run"])
    picked = sorted(chosen.values())[:MAX_ZIPF_RUNS]
    order = [r["run"] for r in rows]
    return sorted((run for _, run in picked), key=order.index)


def zipf_figure(rows: Sequence[dict], generations: dict[str, list[Generation]]):
    from matplotlib.figure import Figure

    runs = [HUMAN_RUN] + [r for r in zipf_runs(rows) if generations.get(r)]
    coefficients = {r["run"]: r["metrics"].get("zipf") for r in rows}
    fig = Figure(figsize=(7.5, 5.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for run in runs:
        counts = rank_counts(generations.get(run, []))
        if counts.size == 0:
            continue
        s = coefficients.get(run)
        label = run + (f"  (s = {s:.2f})" if _number(s) else "")
        human = run == HUMAN_RUN
        ax.loglog(np.arange(1, counts.size + 1), counts, label=label, linewidth=2.2 if human else 1.3,
                  color=HUMAN_COLOR if human else None, alpha=0.9)
    ax.set_xlabel("rank of token (log)")
    ax.set_ylabel("count of token (log)")
    ax.set_title("Zipf rank-frequency: human text and one run per sampler", fontweight="bold")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


# --- repetition -------------------------------------------------------------------------------

def repetition_figure(rows: Sequence[dict]):
    from matplotlib.figure import Figure

    metrics = [m for m in ("repetition", "repetition_paper") if any(_number(r["metrics"].get(m)) for r in rows)]
    runs = [r["run"] for r in rows]
    height = max(2.6, 0.34 * len(runs) + 1.3)
    fig = Figure(figsize=(4.6 * len(metrics) + 1.8, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False).ravel()
    titles = {"repetition": "repetition (code rule)", "repetition_paper": "repetition (caption rule)"}
    for ax, metric in zip(axes, metrics):
        values = np.array([_or_nan(scaled(metric, r["metrics"].get(metric))) for r in rows])
        lows, highs = map(np.array, zip(*[_ci(metric, r) for r in rows]))
        err = np.vstack([np.clip(values - lows, 0, None), np.clip(highs - values, 0, None)])
        err = np.nan_to_num(err)
        colors = [HUMAN_COLOR if run == HUMAN_RUN else "#4C72B0" for run in runs]
        ypos = np.arange(len(runs))
        ax.barh(ypos, np.nan_to_num(values), xerr=err, color=colors, alpha=0.85, capsize=3,
                error_kw={"elinewidth": 1, "ecolor": "#555555"})
        for y, v, hi in zip(ypos, values, highs):
            end = max(v, hi) if math.isfinite(hi) else v
            ax.annotate("—" if not math.isfinite(v) else f"{v:.1f}%", (end if math.isfinite(end) else 0, y),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7, color="#333333")
        top = np.nanmax(np.concatenate([values, highs, [0.0]]))
        ax.set_xlim(0, max(1.0, top * 1.18))
        ax.set_yticks(ypos, runs, fontsize=8)
        ax.set_xlabel("% of generations ending in a repetition loop")
        ax.set_title(titles[metric], fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # once: the panels share the y axis; human on top
    fig.suptitle("Repetition per run (95% interval)", fontweight="bold")
    return fig


# --- log-probabilities -----------------------------------------------------------------------

def token_logprobs(generations: Sequence[Generation], seed: int = 0) -> np.ndarray:
    """All finite per-token model log-probabilities of a run (a fixed subsample when huge)."""
    parts = [np.asarray(g.logprobs_model, dtype=float) for g in generations if g.logprobs_model]
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size > MAX_VIOLIN_POINTS:
        values = np.random.default_rng(seed).choice(values, MAX_VIOLIN_POINTS, replace=False)
    return values


def logprob_figure(rows: Sequence[dict], generations: dict[str, list[Generation]]):
    from matplotlib.figure import Figure

    data = [(r["run"], token_logprobs(generations.get(r["run"], []))) for r in rows]
    data = [(run, v) for run, v in data if v.size]
    if not data:
        return None
    fig = Figure(figsize=(8.5, max(2.8, 0.42 * len(data) + 1.4)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ypos = np.arange(len(data))
    spread = [i for i, (_, v) in enumerate(data) if np.ptp(v) > 0 and v.size > 1]
    if spread:
        parts = horizontal_violins(ax, [data[i][1] for i in spread], ypos[spread])
        for i, body in zip(spread, parts["bodies"]):
            body.set_facecolor(HUMAN_COLOR if data[i][0] == HUMAN_RUN else "#4C72B0")
            body.set_alpha(0.45 if data[i][0] == HUMAN_RUN else 0.55)
        parts["cmedians"].set_color("#111111")
    for i, (_, v) in enumerate(data):
        if i not in spread:
            ax.plot([float(np.median(v))], [i], marker="|", markersize=14, color="#111111")
    ax.set_yticks(ypos, [run for run, _ in data], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("log-probability of each token under the model (nats; line = median)")
    ax.set_title("Per-token log-probability: human text and each run", fontweight="bold")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def horizontal_violins(ax, datasets, positions):
    """matplotlib >= 3.10 spells it orientation="horizontal", older versions vert=False."""
    kwargs = {"positions": positions, "showmedians": True, "showextrema": False, "widths": 0.8}
    try:
        return ax.violinplot(datasets, orientation="horizontal", **kwargs)
    except TypeError:
        return ax.violinplot(datasets, vert=False, **kwargs)


# --- writing ---------------------------------------------------------------------------------

def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def figures(rows: Sequence[dict], generations: dict[str, list[Generation]]):
    """Yield (file name, caption, figure) for every plot the results support, in report order."""
    human = next((r for r in rows if r["run"] == HUMAN_RUN), None)
    for sweep in sweeps(rows):
        axis = "log axis" if sweep.log_x else "linear axis"
        yield (sweep.filename, f"{sweep.sampler}: each headline metric against {sweep.param} ({axis}); "
               "bands: 95% bootstrap intervals; dashed line: the human value (shaded: its interval).",
               sweep_figure(sweep, human))
    if any(generations.get(r["run"]) for r in rows):
        yield ("zipf.png", "Token count against rank (log-log): human text and, per sampler family, the run "
               "whose Zipf coefficient s is closest to the human's.", zipf_figure(rows, generations))
    if any(_number(r["metrics"].get("repetition")) for r in rows):
        yield ("repetition.png", "Share of generations that end in a repetition loop, with 95% bootstrap "
               "intervals; human first.", repetition_figure(rows))
    fig = logprob_figure(rows, generations)
    if fig is not None:
        yield ("logprobs.png", "Distribution of the model's log-probability of each token (the human text "
               "scored by the same model); line: median.", fig)


def write_plots(rows: Sequence[dict], generations: dict[str, list[Generation]],
                folder: Path) -> list[tuple[Path, str, bytes]]:
    """Write every plot into `folder` (one figure in memory at a time); returns (path, caption,
    PNG bytes) in report order. Other *.png files in `folder` are stale plots of an earlier
    report (a grid that changed) and are removed: the folder belongs to the report."""
    written = []
    for name, caption, fig in figures(rows, generations):
        path = folder / name
        data = png_bytes(fig)
        write_atomic(path, data)
        written.append((path, caption, data))
    keep = {p.name for p, _, _ in written}
    for old in folder.glob("*.png") if folder.is_dir() else ():
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return written
