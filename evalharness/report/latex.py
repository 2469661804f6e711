"""summary.tex: a booktabs table in the layout of Holtzman et al. 2019, Table 1.

Columns: Method, Perplexity, Self-BLEU4, Zipf Coefficient, Repetition %, HUSE (the paper's
columns, in its order; HUSE only where judgements exist), then MAUVE; the human row first,
then the runs in grid order; per column the run closest to the human value (HUSE, MAUVE: the
highest) in bold; optionally each value ± the half-width of its 95% bootstrap interval.
Needs \\usepackage{booktabs}.
"""

from __future__ import annotations

import math
import re

from evalharness.records import HUMAN_RUN
from evalharness.report.summary import best_runs

# (header, candidate metric names in order of preference, scale, decimals)
COLUMNS = (
    ("Perplexity", ("perplexity_sampler", "perplexity"), 1.0, 2),
    ("Self-BLEU4", ("self_bleu_4", "self_bleu"), 1.0, 3),
    ("Zipf Coefficient", ("zipf",), 1.0, 3),
    ("Repetition \\%", ("repetition",), 100.0, 2),
    ("HUSE", ("huse",), 1.0, 2),
    ("MAUVE", ("mauve",), 1.0, 3),
)
"""Perplexity is the paper's: from the probabilities each token was sampled with
(perplexity_sampler), the raw model's perplexity only where the sampler's is missing."""

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def escape_latex(text: str) -> str:
    """Text that LaTeX typesets literally (special characters escaped, control characters and
    lone surrogates replaced by spaces)."""
    text = _CONTROL.sub(" ", str(text))
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def method_name(run: str) -> str:
    return "Human" if run == HUMAN_RUN else escape_latex(run)


def pick_columns(rows: list[dict], self_bleu_order: int = 4) -> list[tuple[str, str, float, int]]:
    """(header, metric, scale, decimals) of the columns with a value in some row. `self_bleu`
    stands for Self-BLEU4 only when the scorer's n is 4 (its default)."""
    present = {m for row in rows for m, v in row["metrics"].items() if _finite(v)}
    out = []
    for header, names, scale, decimals in COLUMNS:
        names = tuple(n for n in names if not (n == "self_bleu" and self_bleu_order != 4))
        metric = next((n for n in names if n in present), None)
        if metric is not None:
            out.append((header, metric, scale, decimals))
    return out


def cell(value, ci, scale: float, decimals: int, with_ci: bool, bold: bool) -> str:
    if isinstance(value, float) and math.isinf(value):
        return r"$\infty$" if value > 0 else r"$-\infty$"
    if not _finite(value):
        return "--"
    text = f"{value * scale:.{decimals}f}"
    if bold:
        text = rf"\textbf{{{text}}}"
    if with_ci and ci is not None and len(ci) == 2 and all(_finite(c) for c in ci):
        text += rf" {{\scriptsize$\pm${(ci[1] - ci[0]) / 2 * scale:.{decimals}f}}}"
    return text


def table_rows(rows: list[dict], columns, with_ci: bool) -> list[str]:
    """One LaTeX line per row; a \\midrule after the human row."""
    marks = {metric: best_runs(rows, metric) for _, metric, _, _ in columns}
    lines = []
    for row in rows:
        cells = [method_name(row["run"])]
        for _, metric, scale, decimals in columns:
            cells.append(cell(row["metrics"].get(metric), row.get("ci", {}).get(metric), scale, decimals,
                              with_ci, row["run"] in marks[metric]))
        lines.append(" & ".join(cells) + r" \\")
        if row["run"] == HUMAN_RUN and row is not rows[-1]:
            lines.append(r"\midrule")
    return lines


def tabular(groups: list[tuple[str | None, list[dict]]], with_ci: bool = True,
            self_bleu_order: int = 4) -> str:
    """A booktabs tabular. Each group (title, rows) is one experiment: its title (if any)
    spans the table in italics; groups are separated by rules."""
    columns = pick_columns([r for _, rows in groups for r in rows], self_bleu_order)
    lines = [r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             " & ".join(["Method"] + [h for h, _, _, _ in columns]) + r" \\", r"\midrule"]
    for i, (title, rows) in enumerate(groups):
        if i:
            lines.append(r"\midrule")
        if title is not None:
            lines.append(rf"\multicolumn{{{len(columns) + 1}}}{{l}}{{\textit{{{escape_latex(title)}}}}} \\")
        lines += table_rows(rows, columns, with_ci)
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def caption_text(with_ci: bool, columns_used: list[str]) -> str:
    parts = ["Perplexity of the generated text under the distribution it was sampled from"
             if "perplexity_sampler" in columns_used else "Perplexity of the generated text under the model",
             "Self-BLEU4 over the generations of each run, Zipf coefficient of their token counts, "
             "share of generations ending in a repetition loop (\\%)"]
    if "huse" in columns_used:
        parts.append("HUSE (Hashimoto et al.\\ 2019) from human typicality judgements and the sampler's "
                     "probabilities (--: no judgements)")
    if "mauve" in columns_used:
        parts.append("MAUVE against the human continuations")
    text = "; ".join(parts) + " (layout of Holtzman et al.\\ 2019, Table 1)."
    if with_ci:
        text += " $\\pm$: half-width of the 95\\% bootstrap interval over prompts."
    highest = [name for metric, name in (("huse", "HUSE"), ("mauve", "MAUVE")) if metric in columns_used]
    tied = (" and every run whose 95\\% paired-bootstrap interval of the difference from it (the same "
            "resampled prompts) includes 0.")
    return text + (f" Bold: closest to human ({', '.join(highest)}: highest){tied}" if highest
                   else f" Bold: closest to human{tied}")


def table_document(groups: list[tuple[str | None, list[dict]]], label: str, with_ci: bool = True,
                   self_bleu_order: int = 4, source: str = "") -> str:
    """The complete table environment, ready to \\input{} (requires booktabs)."""
    columns = [m for _, m, _, _ in pick_columns([r for _, rows in groups for r in rows], self_bleu_order)]
    source = " ".join(source.split())
    header = f"% Generated by evalharness{' from ' + source if source else ''}. Requires \\usepackage{{booktabs}}.\n"
    return (header + "\\begin{table}[t]\n\\centering\n\\small\n"
            + tabular(groups, with_ci, self_bleu_order) + "\n"
            + f"\\caption{{{caption_text(with_ci, columns)}}}\n"
            + f"\\label{{{label_key(label)}}}\n\\end{{table}}\n")


def label_key(name: str) -> str:
    """A \\label key: letters, digits and -:._ only."""
    return "tab:" + (re.sub(r"[^A-Za-z0-9:._-]+", "-", name).strip("-") or "results")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
