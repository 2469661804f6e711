"""report.html: one self-contained page (inline CSS, PNGs as data: URIs, no script, no URL).

Every text that comes from the results folder (model output, human text, run names, the
experiment's description, the configuration) goes through `text()`, which HTML-escapes it:
a generation holding `<script>` shows those characters and creates no element. A Content
Security Policy that allows nothing but inline styles and data: images backs this up.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Sequence

from evalharness.records import HUMAN_RUN, Generation, Prompt
from evalharness.report.summary import HEADLINE, all_metrics, best_runs, format_value
from evalharness.report.oracle_coverage import sampler_coverage

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1500px;margin:0 auto;padding:1.2rem 1.6rem 3rem}
h1{margin:.2rem 0 .4rem;font-size:1.7rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
nav a{margin-right:1rem}a{color:#0b57d0}
.description{font-size:1.05rem;max-width:70rem;white-space:pre-wrap}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem;margin:.8rem 0}
dl.meta dt{color:#555}dl.meta dd{margin:0;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto;background:#fff;border:1px solid #ddd;border-radius:6px}
table{border-collapse:collapse;font-size:.86rem;font-variant-numeric:tabular-nums}
th,td{padding:.32rem .6rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f1f3f4;position:sticky;top:0}th:first-child,td:first-child{text-align:left}
tr.human td{background:#fff8e1;font-weight:600}td strong{color:#0b6b2e}
.note{font-size:.85rem;color:#555;max-width:70rem}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.6rem}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}figcaption{font-size:.88rem;color:#444;margin-top:.4rem}
details.sample{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.8rem 0;padding:.4rem .8rem}
details.sample>summary{cursor:pointer;font-weight:600;padding:.2rem 0}
.snippet{font-weight:400;color:#555;margin-left:.5rem}
.context{background:#eef3fb;border-left:4px solid #0b57d0;padding:.4rem .7rem;margin:.5rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.6rem;margin:.5rem 0}
.card{border:1px solid #e0e0e0;border-radius:5px;padding:.4rem .6rem;background:#fcfcfc}
.card.human{border-color:#e0b000;background:#fffbea}
.card h3{font-size:.85rem;margin:0 0 .3rem;font-family:ui-monospace,"DejaVu Sans Mono",monospace;overflow-wrap:anywhere}
.card .text{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:.9rem}
.card .facts{font-size:.75rem;color:#666;margin:.35rem 0 0}
pre.config{background:#fff;border:1px solid #ddd;padding:.6rem;overflow:auto;font-size:.8rem;max-height:40rem}
"""


def text(value) -> str:
    """HTML-escaped text; control characters (invalid in HTML) shown as their Unicode pictures,
    lone surrogates (unencodable) as U+FFFD."""
    cleaned = _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())) if m.group() != "\x7f" else "\u2421",
                           _SURROGATE.sub("\ufffd", str(value)))
    return html.escape(cleaned, quote=True)


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{text(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n'
            f'</body>\n</html>\n')


def header(name: str, description: str, manifest: dict, n_prompts: int, n_runs: int) -> str:
    config = manifest.get("config") or {}
    model, data = config.get("model") or {}, config.get("data") or {}
    versions = manifest.get("versions") or {}
    facts = [
        ("model", model.get("name")), ("data", data.get("source")),
        ("prompts", f"{n_prompts} (context: {data.get('context_tokens', '?')} tokens, "
                    f"up to {data.get('max_new_tokens', '?')} new tokens)"),
        ("runs", f"{n_runs} besides the human continuations"), ("seed", manifest.get("seed")),
        ("ran", " → ".join(str(t) for t in (manifest.get("started"), manifest.get("finished")) if t)),
        ("evalharness", " ".join(str(v) for v in (manifest.get("evalharness_version"),
                                                   manifest.get("git_commit")) if v)),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]
    items = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in facts if v not in (None, ""))
    desc = f'<p class="description">{text(description)}</p>' if description else ""
    nav = ('<nav><a href="#summary">Summary</a><a href="#human-text">Human text</a><a href="#plots">Plots</a>'
           '<a href="#samples">Samples</a><a href="#config">Configuration</a></nav>')
    return f"<header><h1>{text(name)}</h1>{desc}<dl class=\"meta\">{items}</dl>{nav}</header>"


def metrics_table(rows: Sequence[dict], metrics: list[str], table_id: str) -> str:
    marks = {m: best_runs(rows, m) for m in metrics}
    head = "<tr><th>run</th>" + "".join(f"<th>{text(m)}</th>" for m in metrics) + "</tr>"
    body = []
    for row in rows:
        cells = []
        for m in metrics:
            value = text(format_value(m, row["metrics"].get(m), row.get("ci", {}).get(m)))
            cells.append(f"<td><strong>{value}</strong></td>" if row["run"] in marks[m] else f"<td>{value}</td>")
        css = ' class="human"' if row["run"] == HUMAN_RUN else ""
        body.append(f"<tr{css}><td>{text(row['run'])}</td>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table id="{table_id}"><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def summary_section(rows: Sequence[dict]) -> str:
    headline = [m for m in HEADLINE if any(m in r["metrics"] for r in rows)]
    rest = [m for m in all_metrics(list(rows)) if m not in headline]
    legend = ('<p class="note">Values ± half-width of the 95% bootstrap interval over prompts (HUSE: over '
              'rated texts). Bold: per column, the run closest to the human value (MAUVE, HUSE, human_coverage: '
              'the highest; frontier integral, human_perplexity_sampler: the lowest) and every run '
              'indistinguishable from it: the 95% paired-bootstrap interval of its difference from the best run '
              '(the same resampled prompts; for closeness to human, of the difference in distance to the human '
              'value) includes 0. Percentages: share of '
              'generations (human_coverage: of human tokens). ∞: some human token lies outside the '
              "sampler's support.</p>")
    more = (f"<details><summary>All {len(rest)} further metrics</summary>"
            f"{metrics_table(rows, rest, 'all-metrics')}</details>") if rest else ""
    return f'<section id="summary"><h2>Summary</h2>{metrics_table(rows, headline, "summary-table")}{legend}{more}</section>'


def oracle_cell(row: dict, oracle: dict | None) -> str:
    """The share of the oracle's tokens the run's sampler allows, when the oracle can tell."""
    value = sampler_coverage(oracle["summary"], oracle["columns"], row["sampler"], row["params"]) if oracle else None
    return format_value("human_coverage", value) if value is not None else "—"


def human_text_section(rows: Sequence[dict], oracle: dict | None) -> str:
    """How much of the human text each sampler allows, beside the oracle's answer (if it was run)."""
    runs = [r for r in rows if "human_coverage" in r["metrics"]]
    if not runs:
        return ('<section id="human-text"><h2>How much of the human text each sampler allows</h2><p class="note">'
                "No run has these metrics: only search methods, or results scored before evalharness "
                "computed them (run the experiment again to add them).</p></section>")
    head = ("<tr><th>run</th><th>human tokens allowed</th><th>perplexity of human text under the sampler</th>"
            + ("<th>oracle: tokens allowed</th>" if oracle else "") + "</tr>")
    body = "".join(
        f"<tr><td>{text(r['run'])}</td>"
        f"<td>{text(format_value('human_coverage', r['metrics'].get('human_coverage'), r['ci'].get('human_coverage')))}</td>"
        f"<td>{text(format_value('human_perplexity_sampler', r['metrics'].get('human_perplexity_sampler'), r['ci'].get('human_perplexity_sampler')))}</td>"
        + (f"<td>{text(oracle_cell(r, oracle))}</td>" if oracle else "") + "</tr>" for r in runs)
    note = ("Each human continuation token, given the context and the human tokens before it, scored under the "
            "run's own sampling distribution (human_coverage: share inside its support; perplexity: exp of the mean "
            "negative log-probability, ∞ when a token is outside the support).")
    if oracle:
        settings = oracle["summary"].get("settings") or {}
        context = (f"the previous {settings.get('context_tokens')} tokens" if settings.get("mode") == "window"
                   else "the whole preceding document")
        note += (f" Oracle: the same sampler's support on the {oracle['summary'].get('count', '?')} tokens scored by "
                 f"`evalharness oracle` (each given {context}; documents of its own choosing): the same question on "
                 "other tokens and contexts. —: the oracle's ranks cannot answer it (or, without "
                 "oracle_tokens.jsonl, k or p is not on its grid).")
    return (f'<section id="human-text"><h2>How much of the human text each sampler allows</h2>'
            f'<div class="table-wrap"><table id="human-text-table"><thead>{head}</thead><tbody>{body}</tbody>'
            f'</table></div><p class="note">{text(note)}</p></section>')


def plots_section(plots: Sequence[tuple[str, str, bytes]]) -> str:
    if not plots:
        return '<section id="plots"><h2>Plots</h2><p class="note">No plots: nothing to plot.</p></section>'
    figures = []
    for name, caption, png in plots:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        figures.append(f'<figure id="plot-{text(Path(name).stem)}"><img src="{uri}" alt="{text(caption)}">'
                       f"<figcaption><b>{text(name)}</b> — {text(caption)}</figcaption></figure>")
    return '<section id="plots"><h2>Plots</h2>' + "".join(figures) + "</section>"


def card(run: str, gen: Generation | None) -> str:
    css = "card human" if run == HUMAN_RUN else "card"
    if gen is None:
        return f'<article class="{css}"><h3>{text(run)}</h3><p class="facts">no generation</p></article>'
    ending = "ended with end-of-text" if gen.stopped_by_eos else "stopped at the token limit"
    return (f'<article class="{css}"><h3>{text(run)}</h3><p class="text">{text(gen.text)}</p>'
            f'<p class="facts">{gen.num_tokens} tokens · {ending}</p></article>')


def samples_section(prompts: Sequence[Prompt], runs: Sequence[str],
                    generations: dict[str, dict[str, Generation]]) -> str:
    """Context once, then the human continuation and every run's, side by side."""
    blocks = []
    for i, prompt in enumerate(prompts):
        cards = "".join(card(run, generations.get(run, {}).get(prompt.prompt_id)) for run in runs)
        snippet = " ".join(prompt.context_text.split())
        snippet = snippet if len(snippet) <= 90 else snippet[:89] + "…"
        blocks.append(f'<details class="sample"{" open" if i == 0 else ""}><summary>Prompt '
                      f"{text(prompt.prompt_id)} (document {text(prompt.doc_id)}) "
                      f'<span class="snippet">{text(snippet)}</span></summary>'
                      f'<div class="context"><b>Context:</b> {text(prompt.context_text)}</div>'
                      f'<div class="cards">{cards}</div></details>')
    intro = (f'<p class="note">The first {len(prompts)} prompts by id; click a prompt to open it. '
             "Texts are shown exactly as decoded (control characters as symbols).</p>")
    return '<section id="samples"><h2>Samples</h2>' + intro + "".join(blocks) + "</section>"


def config_section(manifest: dict) -> str:
    config = manifest.get("config")
    if config is None:
        return ""
    dump = json.dumps(config, indent=2, ensure_ascii=False, default=str)
    return (f'<section id="config"><h2>Configuration</h2><details><summary>Experiment configuration '
            f'(manifest.json)</summary><pre class="config">{text(dump)}</pre></details></section>')


def render(name: str, description: str, manifest: dict, rows: Sequence[dict], prompts: Sequence[Prompt],
           generations: dict[str, dict[str, Generation]], plots: Sequence[tuple[str, str, bytes]],
           n_prompts: int, oracle: dict | None = None) -> str:
    """The whole page. `prompts` are the ones shown in the sample browser; `n_prompts` all of them;
    `oracle`: {"summary": oracle.json, "columns": per-token columns or None} of the experiment's
    oracle analysis, when there is one."""
    runs = [r["run"] for r in rows]
    body = "\n".join([
        header(name, description, manifest, n_prompts, len([r for r in runs if r != HUMAN_RUN])),
        summary_section(rows), human_text_section(rows, oracle), plots_section(plots),
        samples_section(prompts, runs, generations),
        config_section(manifest),
    ])
    return page(f"{name} — evalharness report", body)
