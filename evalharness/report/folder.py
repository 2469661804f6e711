"""`report` and `compare`: what people read, built only from results folders (never regenerating).

    python -m evalharness report RESULTS_DIR
        (re)writes RESULTS_DIR/summary.tex, RESULTS_DIR/plots/*.png and RESULTS_DIR/report.html
    python -m evalharness compare DIR1 DIR2 ... [--output DIR]
        one table across experiments (rows: experiment / run), printed as Markdown and, with
        --output, written as comparison.{json,csv,md,tex}

`write_report(root)` is what `run` calls at its end. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from evalharness.errors import UserError

SAMPLE_PROMPTS = 10
"""Prompts shown in the HTML sample browser: the first ones by prompt id."""

COMPARE_STEM = "comparison"


@dataclass(frozen=True)
class Results:
    """What a results folder holds, as the report needs it."""

    root: Path
    manifest: dict
    rows: list[dict]
    """summary.json: one row per run, human first."""
    prompts: list = field(default_factory=list)
    generations: dict = field(default_factory=dict)
    """run -> {prompt_id: Generation} (empty when loaded without generations)."""

    @property
    def config(self) -> dict:
        return self.manifest.get("config") or {}

    @property
    def name(self) -> str:
        return str(self.manifest.get("experiment") or self.config.get("name") or self.root.name)

    @property
    def description(self) -> str:
        return str(self.config.get("description") or "")

    @property
    def model(self) -> str:
        return str((self.config.get("model") or {}).get("name") or "")

    def self_bleu_order(self) -> int:
        """The BLEU order of the `self_bleu` metric (the scorer's option n, default 4)."""
        for scorer in self.config.get("scorers") or []:
            if isinstance(scorer, dict) and scorer.get("name") == "self_bleu":
                return int(dict(scorer.get("options") or []).get("n", 4))
        return 4


# --- reading ---------------------------------------------------------------------------------

def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); was it edited by hand?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def check_rows(rows, path: Path) -> list[dict]:
    """summary.json rows with defaults filled in; the human row moved first."""
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and isinstance(r.get("run"), str) and isinstance(r.get("metrics"), dict)
            for r in rows):
        raise UserError(f"{path}: not an evalharness summary (expected a non-empty list of rows with "
                        "'run' and 'metrics'); rerun `python -m evalharness run` to rewrite it")
    from evalharness.store import finite_or_named

    rows = [{"sampler": r["run"], "params": {}, "ci": {}, **r} for r in rows]
    for row in rows:  # "inf" / "nan" strings (JSON has no infinity) back to floats
        row["metrics"] = {k: finite_or_named(v) for k, v in row["metrics"].items()}
        row["ci"] = {k: finite_or_named(v) for k, v in (row["ci"] or {}).items()}
    return sorted(rows, key=lambda r: r["run"] != "human")  # stable: grid order kept


def load_results(root: Path, with_generations: bool = True) -> Results:
    """Read a results folder; every problem is a one-line UserError naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such results folder")
    manifest_path, summary_path = root / "manifest.json", root / "summary.json"
    if not manifest_path.exists() and not summary_path.exists():
        raise UserError(f"{root}: not an evalharness results folder (no manifest.json or summary.json)")
    if not summary_path.exists():
        raise UserError(f"{summary_path}: missing; the experiment was not scored to the end — run "
                        "`python -m evalharness run` on its YAML again to finish it")
    manifest = _read_json(manifest_path) if manifest_path.exists() else {}
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path}: not an evalharness manifest (expected a JSON object)")
    rows = check_rows(_read_json(summary_path), summary_path)
    if not with_generations:
        return Results(root, manifest, rows)
    return Results(root, manifest, rows, read_prompts(root), read_all_generations(root, rows))


def read_prompts(root: Path) -> list:
    from evalharness.store import ResultsDir

    try:
        return ResultsDir(root).read_prompts()
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{root / 'prompts.jsonl'}: unreadable record ({exc})") from None


def read_all_generations(root: Path, rows: list[dict]) -> dict:
    from evalharness.store import ResultsDir

    store, out = ResultsDir(root), {}
    for row in rows:
        try:
            out[row["run"]] = store.read_generations(row["run"])
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{store.generations_path(row['run'])}: unreadable record ({exc})") from None
    return out


def sample_prompts(prompts: list, count: int = SAMPLE_PROMPTS) -> list:
    """The first `count` prompts by id (numeric ids in numeric order): deterministic."""
    return sorted(prompts, key=lambda p: (len(p.prompt_id), p.prompt_id))[:count]


# --- writing ---------------------------------------------------------------------------------

def write_report(root: Path, ci: bool = True, samples: int = SAMPLE_PROMPTS) -> list[Path]:
    """(Re)write summary.tex, plots/*.png and report.html from the results folder `root`.

    Reads only the folder (summary.json, manifest.json, prompts.jsonl, <run>/generations.jsonl);
    returns the paths written. `ci`: show ± interval half-widths in summary.tex."""
    from evalharness import html_report, latex, plots
    from evalharness.store import write_atomic

    results = load_results(root)
    root = results.root
    tex_path = root / "summary.tex"
    write_atomic(tex_path, latex.table_document([(None, results.rows)], label=results.name, with_ci=ci,
                                                self_bleu_order=results.self_bleu_order(),
                                                source=f"{root.name}/summary.json"))
    ordered = {run: list(by_id.values()) for run, by_id in results.generations.items()}
    written = plots.write_plots(results.rows, ordered, root / "plots")
    images = [(path.name, caption, data) for path, caption, data in written]
    html_path = root / "report.html"
    write_atomic(html_path, html_report.render(
        results.name, results.description, results.manifest, results.rows,
        sample_prompts(results.prompts, samples), results.generations, images, len(results.prompts),
        oracle=read_oracle(root / "oracle")))
    return [tex_path, *(path for path, _, _ in written), html_path]


def read_oracle(folder: Path) -> dict | None:
    """The oracle analysis stored in the results folder (`evalharness oracle`'s default output),
    if any: oracle.json and, when kept, the per-token columns of oracle_tokens.jsonl."""
    from evalharness.oracle import read_token_columns

    if not (folder / "oracle.json").is_file():
        return None
    return {"summary": _read_json(folder / "oracle.json"), "columns": read_token_columns(folder)}


# --- compare ---------------------------------------------------------------------------------

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
    from evalharness.summary import HEADLINE, best_runs, format_value

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
                               "(MAUVE: the highest).\n")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def comparison_csv(rows: list[dict]) -> str:
    import csv
    import io

    from evalharness.summary import all_metrics

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
    from evalharness import latex

    folders = ", ".join(dict.fromkeys(Path(r["folder"]).name for r in rows))
    return latex.table_document(blocks(rows), label="comparison", with_ci=ci, self_bleu_order=self_bleu_order,
                                source=f"`compare` of {folders}")


def write_comparison(folders: list[Path], output: Path | None, ci: bool = True) -> tuple[str, list[Path]]:
    """(Markdown table, files written): comparison.{json,csv,md,tex} in `output` when given."""
    from evalharness.store import ensure_writable, write_atomic, write_json

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


# --- command line ----------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    if args.samples < 0:
        raise UserError("--samples: must be an integer >= 0")
    paths = write_report(Path(args.results), ci=not args.no_ci, samples=args.samples)
    for path in paths:
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    markdown, paths = write_comparison([Path(f) for f in args.results], Path(args.output) if args.output else None,
                                       ci=not args.no_ci)
    print(markdown)
    for path in paths:
        print(path)
    return 0


def register_command(subparsers) -> None:
    report = subparsers.add_parser("report", help="(re)write summary.tex, plots/ and report.html of a results folder",
                                   description="Write summary.tex (booktabs, Holtzman et al. Table 1 layout), "
                                               "plots/*.png and a self-contained report.html from a results "
                                               "folder. Reads only the folder; generates nothing.")
    report.add_argument("results", help="results folder (the --output of `run`, default results/<name>)")
    report.add_argument("--no-ci", action="store_true", help="summary.tex without ± interval half-widths")
    report.add_argument("--samples", type=int, default=SAMPLE_PROMPTS,
                        help=f"prompts in the HTML sample browser (default {SAMPLE_PROMPTS})")
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    report.set_defaults(func=cmd_report)

    compare = subparsers.add_parser("compare", help="one table across experiments (e.g. two models, same grid)",
                                    description="Rows experiment / run from several results folders; prints "
                                                "Markdown, and with --output writes comparison.{json,csv,md,tex}.")
    compare.add_argument("results", nargs="+", help="two or more results folders")
    compare.add_argument("--output", help="folder for comparison.{json,csv,md,tex}")
    compare.add_argument("--no-ci", action="store_true", help="comparison.tex without ± interval half-widths")
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    compare.set_defaults(func=cmd_compare)
