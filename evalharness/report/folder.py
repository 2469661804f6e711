"""A results folder as the report reads it (summary, manifest, prompts, generations, oracle) and
`write_report(root)`, which `run` calls at its end and `report` calls alone: summary.tex,
plots/*.png and report.html, each written atomically, from the folder alone (never regenerating)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from evalharness.errors import UserError
from evalharness.report import SAMPLE_PROMPTS
from evalharness.report import html as html_report
from evalharness.report import latex, plots
from evalharness.report.oracle_coverage import read_token_columns
from evalharness.store import ResultsDir, finite_or_named, write_atomic



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
    try:
        return ResultsDir(root).read_prompts()
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{root / 'prompts.jsonl'}: unreadable record ({exc})") from None


def read_all_generations(root: Path, rows: list[dict]) -> dict:
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
    if not (folder / "oracle.json").is_file():
        return None
    return {"summary": _read_json(folder / "oracle.json"), "columns": read_token_columns(folder)}
