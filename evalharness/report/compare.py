"""`compare`: one table across experiments (rows experiment / run), from their results folders."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from evalharness.errors import UserError
from evalharness.report import latex
from evalharness.report.folder import Results, load_results
from evalharness.report.summary import HEADLINE, all_metrics, best_runs, format_value
from evalharness.store import ensure_writable, write_atomic, write_json

COMPARE_STEM = "comparison"


def experiment_labels(results: list[Results]) -> list[str]:
    """Experiment names; folder names (then paths) where names alone would be ambiguous."""
    for label in (lambda r: r.name, lambda r: r.root.name, lambda r: str(r.root)):
        labels = [label(r) for r in results]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i + 1}:{r.root}" for i, r in enumerate(results)]


def comparison_rows(folders: list[Path]) -> list[dict]:
    """Rows of every experiment (each block human first), tagged with experiment and model."""
    if len(folders) < 2:
        raise UserError("compare: give at least two results folders")
    results = [load_results(Path(f), with_generations=False) for f in folders]
    rows = []
    for label, res in zip(experiment_labels(results), results):
        rows += [{"experiment": label, "folder": str(res.root), "model": res.model, **row} for row in res.rows]
    return rows


def blocks(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["experiment"], []).append(row)
    return list(out.items())


def comparison_markdown(rows: list[dict]) -> str:
    metrics = [m for m in HEADLINE if any(m in r["metrics"] for r in rows)]
    lines = ["| experiment | model | run | " + " | ".join(metrics) + " |", "|---|---|---|" + "---:|" * len(metrics)]
    for _, block in blocks(rows):
        marks = {m: best_runs(block, m) for m in metrics}
        for row in block:
            cells = [format_value(m, row["metrics"].get(m), row["ci"].get(m)) for m in metrics]
            cells = [f"**{c}**" if row["run"] in marks[m] else c for m, c in zip(metrics, cells)]
            lines.append("| " + " | ".join(_md(x) for x in (row["experiment"], row["model"], row["run"]))
                         + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nValues ± half-width of the 95% bootstrap interval over prompts. Bold: "
                               "per experiment and column, the run closest to that experiment's human value "
                               "(MAUVE: the highest) and every run of the experiment indistinguishable from it "
                               "(the 95% paired-bootstrap interval of the difference includes 0).\n"
                               + paired_markdown(rows, metrics))


def paired_markdown(rows: list[dict], metrics: list[str]) -> str:
    """Per experiment and metric: the best run and the runs that cannot be told apart from it,
    each with its gap (how much further from the ideal) and the gap's paired 95% interval."""
    lines = []
    for label, block in blocks(rows):
        for metric in metrics:
            entries = [(row["run"], row["vs_best"][metric]) for row in block if metric in (row.get("vs_best") or {})]
            if not entries:
                continue
            tied = [f"{_md(run)} ({_gap(metric, entry)})" for run, entry in entries
                    if entry["shares_best"] and run != entry["best"]]
            lines.append(f"| {_md(label)} | {metric} | {_md(entries[0][1]['best'])} | {'; '.join(tied) or '—'} |")
    if not lines:
        return ""
    return ("\n| experiment | metric | best | indistinguishable from it (gap, 95% paired interval) |\n"
            "|---|---|---|---|\n" + "\n".join(lines) + "\n")


def _gap(metric: str, entry: dict) -> str:
    low, high = entry["gap_ci"] or (None, None)
    interval = f" [{format_value(metric, low)}, {format_value(metric, high)}]" if low is not None else ""
    return f"{format_value(metric, entry['gap'])}{interval}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def comparison_csv(rows: list[dict]) -> str:
    metrics = all_metrics(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["experiment", "model", "run", "sampler", "params"]
                    + [c for m in metrics for c in (m, f"{m}_low", f"{m}_high")])
    for row in rows:
        params = ";".join(f"{k}={v}" for k, v in row["params"].items())
        cells = []
        for m in metrics:
            low, high = (row["ci"].get(m) or (None, None))[:2]
            cells += [_plain(row["metrics"].get(m)), _plain(low), _plain(high)]
        writer.writerow([row["experiment"], row["model"], row["run"], row["sampler"], params] + cells)
    return out.getvalue()


def _plain(value) -> str:
    return "" if value is None else repr(float(value))


def comparison_tex(rows: list[dict], ci: bool, self_bleu_order: int = 4) -> str:
    folders = ", ".join(dict.fromkeys(Path(r["folder"]).name for r in rows))
    return latex.table_document(blocks(rows), label="comparison", with_ci=ci, self_bleu_order=self_bleu_order,
                                source=f"`compare` of {folders}")


def write_comparison(folders: list[Path], output: Path | None, ci: bool = True) -> tuple[str, list[Path]]:
    """(Markdown table, files written): comparison.{json,csv,md,tex} in `output` when given."""
    rows = comparison_rows(folders)
    markdown = comparison_markdown(rows)
    if output is None:
        return markdown, []
    orders = {load_results(Path(f), with_generations=False).self_bleu_order() for f in folders}
    output = Path(output)
    ensure_writable(output)
    paths = [output / f"{COMPARE_STEM}.{ext}" for ext in ("json", "csv", "md", "tex")]
    write_json(paths[0], rows)
    write_atomic(paths[1], comparison_csv(rows))
    write_atomic(paths[2], markdown)
    write_atomic(paths[3], comparison_tex(rows, ci, orders.pop() if len(orders) == 1 else 0))
    return markdown, paths
