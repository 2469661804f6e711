"""`report` and `compare`: plots, self-contained HTML, LaTeX table, cross-experiment tables.

One real results folder is made by running a tiny experiment through the CLI (once per
session), then `python -m evalharness report` rewrites the report files from it. Tests that
alter a folder work on a copy.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
GRID = ("[greedy, {name: top_k, k: [1, 4, 32]}, {name: top_p, p: [0.5, 0.9]}, "
        "{name: temperature, temperature: [0.8, 1.2]}]")
SCORERS = "[length, perplexity, repetition, self_bleu, zipf, distinct]"
REPORT_FILES = ("summary.tex", "report.html")
PLOTS = ("top_k-k.png", "top_p-p.png", "temperature-temperature.png", "zipf.png", "repetition.png",
         "logprobs.png")
INJECTED = '<script>alert(1)</script><img src=x onerror="alert(2)"> & </pre>'
HOSTILE_CONTEXT = "<b onmouseover=alert(3)>context</b>"
CONTROL = "bell\x07 null\x00 escape\x1b end"

_BUILT: dict[str, Path] = {}


def cli(*args: str) -> None:
    """`python -m evalharness ARGS` in this process (torch and the model are already loaded)."""
    from evalharness.cli import main

    assert main(list(args)) == 0, f"python -m evalharness {' '.join(args)} failed"


def build_results(tmp_path_factory, model: Path, corpus: Path) -> Path:
    """Run the tiny grid through `run`, drop whatever report files `run` wrote, then `report`.
    Memoised per process so test_report_browser.py reuses the same folder."""
    if "dir" not in _BUILT:
        base = tmp_path_factory.mktemp("report")
        yaml = write_experiment(base / "tiny.yaml", model, corpus, GRID, scorers=SCORERS, num_prompts=5,
                                max_new=10, extra='description: "Tiny grid for <report> tests & co."\n')
        out = base / "results"
        cli("run", str(yaml), "--output", str(out))
        for name in REPORT_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "plots", ignore_errors=True)
        cli("report", str(out))
        _BUILT["dir"] = out
    return _BUILT["dir"]


def crafted_copy(results_dir: Path, folder: Path) -> Path:
    """A copy of the results with hostile text in a generation and a prompt, control characters
    in another generation, a stale plot, and the model and data gone; its report rewritten."""
    from evalharness.report.folder import write_report

    folder = Path(shutil.copytree(results_dir, folder))
    edit_first_record(folder / "top_p-p=0.5" / "generations.jsonl", text=INJECTED)
    edit_first_record(folder / "greedy" / "generations.jsonl", text=CONTROL)
    edit_first_record(folder / "prompts.jsonl", context_text=HOSTILE_CONTEXT)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["model"]["name"] = str(folder / "no-such-model")
    manifest["config"]["data"]["source"] = str(folder / "no-such-data.jsonl")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "plots" / "top_k-temperature.png").write_bytes(b"left over from an earlier grid")
    (folder / "report.html").unlink()
    _BUILT["crafted paths"] = write_report(folder)
    return folder


def edit_first_record(path: Path, **changes) -> None:
    first, *rest = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([json.dumps({**json.loads(first), **changes}), *rest]) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory, tiny_model_dir, corpus_jsonl) -> Path:
    return build_results(tmp_path_factory, tiny_model_dir, corpus_jsonl)


@pytest.fixture(scope="module")
def crafted(results_dir, tmp_path_factory) -> Path:
    return crafted_copy(results_dir, tmp_path_factory.mktemp("crafted") / "results")


class Page(HTMLParser):
    """Every element and attribute of a page, and its text as a browser would show it."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.chunks: list[str] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def named(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]


def table_rows(source: str, table_id: str) -> list[list[str]]:
    """Cell texts of a table's body rows."""
    body = source.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        rows.append([Page(c).text for c in cells])
    return rows


def summary(folder: Path) -> list[dict]:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


# --- files -----------------------------------------------------------------------------------

def test_report_command_writes_every_file(results_dir):
    for name in REPORT_FILES:
        assert (results_dir / name).is_file(), name
    assert sorted(p.name for p in (results_dir / "plots").glob("*.png")) == sorted(PLOTS)
    assert not list(results_dir.rglob("*.tmp")), "a temporary file was left behind"


def test_plots_are_valid_readable_pngs(results_dir):
    from PIL import Image

    for name in PLOTS:
        path = results_dir / "plots" / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 500 and image.height >= 250, (name, image.size)
            low, high = image.convert("L").getextrema()
            assert high - low > 100, f"{name} looks blank"


def test_write_report_returns_what_it_wrote_and_drops_stale_plots(crafted):
    paths = _BUILT["crafted paths"]
    assert paths[0] == crafted / "summary.tex" and paths[-1] == crafted / "report.html"
    assert sorted(p.name for p in paths[1:-1]) == sorted(PLOTS)
    assert all(p.is_file() for p in paths)
    assert not (crafted / "plots" / "top_k-temperature.png").exists()
    assert not list(crafted.rglob("*.tmp"))


# --- HTML ------------------------------------------------------------------------------------

def test_html_is_self_contained(results_dir):
    from PIL import Image

    source = (results_dir / "report.html").read_text(encoding="utf-8")
    page = Page(source)
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not re.match(r"\s*(https?:)?//", value or ""), f"<{tag} {name}={value!r}> points outside"
    assert not any(t in {"script", "link", "iframe", "object", "embed"} for t, _ in page.tags)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", source), "CSS loads something from outside"
    images = page.named("img")
    assert len(images) == len(PLOTS)
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        assert attrs.get("alt")
    csp = [a for a in page.named("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_html_summary_table_human_first_with_intervals(results_dir):
    source = (results_dir / "report.html").read_text(encoding="utf-8")
    rows = table_rows(source, "summary-table")
    runs = [r["run"] for r in summary(results_dir)]
    assert [r[0] for r in rows] == runs and runs[0] == "human"
    assert all("±" in cell for cell in rows[0][1:] if cell != "—")
    assert "Tiny grid for &lt;report&gt; tests &amp; co." in source


def test_html_sample_browser_shows_context_human_and_every_run(results_dir):
    from evalharness.report.html import text
    from evalharness.store import ResultsDir

    source = (results_dir / "report.html").read_text(encoding="utf-8")
    store = ResultsDir(results_dir)
    prompts = sorted(store.read_prompts(), key=lambda p: p.prompt_id)
    runs = [r["run"] for r in summary(results_dir)]
    samples = source.split('id="samples"', 1)[1]
    blocks = samples.split('<details class="sample"')[1:]
    assert len(blocks) == min(10, len(prompts))
    for prompt, block in zip(prompts, blocks):
        page = Page(block)
        assert f"Prompt {prompt.prompt_id}" in page.text
        assert " ".join(prompt.context_text.split()) in " ".join(page.text.split())
        titles = [Page(h).text for h in re.findall(r"<h3>(.*?)</h3>", block)]
        assert titles == runs
        for run in runs:
            assert text(store.read_generations(run)[prompt.prompt_id].text) in block


def test_generated_script_is_escaped_and_creates_no_element(crafted):
    """The model and data sources named in the manifest are gone too: the report reads only
    the results folder."""
    source = (crafted / "report.html").read_text(encoding="utf-8")
    page = Page(source)
    assert not page.named("script")
    assert all(a.get("src", "").startswith("data:image/png") for a in page.named("img"))
    assert not [(t, n) for t, attrs in page.tags for n in attrs if n.lower().startswith("on")]
    assert INJECTED in page.text and HOSTILE_CONTEXT in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source


def test_control_characters_do_not_reach_the_page(crafted):
    source = (crafted / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", source)
    assert "bell\u2407 null\u2400 escape\u241b end" in source


# --- LaTeX -----------------------------------------------------------------------------------

def tex_rows(tex: str) -> list[str]:
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    return [line for line in body.splitlines() if line.endswith(r"\\") and "multicolumn" not in line]


def test_summary_tex_is_booktabs_table1_layout_human_first(results_dir):
    tex = (results_dir / "summary.tex").read_text(encoding="utf-8")
    for command in (r"\begin{table}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"):
        assert command in tex
    header = tex.split(r"\toprule", 1)[1].split(r"\\", 1)[0].strip()
    assert header == r"Method & Perplexity & Self-BLEU4 & Zipf Coefficient & Repetition \%"  # no MAUVE scored
    rows = tex_rows(tex)
    runs = [r["run"] for r in summary(results_dir)]
    assert len(rows) == len(runs)
    assert rows[0].startswith("Human & ")
    assert any(row.startswith(r"top\_k-k=4 & ") for row in rows)
    assert all(row.count(" & ") == 4 for row in rows)
    assert all(not re.search(r"(?<!\\)[_%#&$^~]", row.replace(" & ", " ").replace(r"$\pm$", "")) for row in rows)
    assert r"$\pm$" in tex


def test_latex_escaping_and_ci_option():
    from evalharness.report import latex

    assert latex.escape_latex(r"a_b%c&d#e$f{g}h~i^j\k<l>|") == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
        r"\textless{}l\textgreater{}\textbar{}")
    rows = [
        {"run": "human", "sampler": "human", "params": {}, "metrics": {"perplexity": 12.38, "self_bleu_4": 0.31,
                                                                       "zipf": 0.93, "repetition": 0.0028},
         "ci": {"perplexity": [12.0, 12.8]}},
        {"run": "top_p-p=0.95", "sampler": "top_p", "params": {"p": 0.95},
         "metrics": {"perplexity": 13.13, "self_bleu_4": 0.32, "zipf": 0.95, "repetition": 0.0036, "mauve": 0.9},
         "ci": {"perplexity": [12.9, 13.4], "mauve": [0.88, 0.92]}},
        {"run": "greedy", "sampler": "greedy", "params": {},
         "metrics": {"perplexity": 1.5, "self_bleu_4": 0.5, "zipf": 1.0, "repetition": 0.7366, "mauve": 0.1}},
    ]
    with_ci = latex.table_document([(None, rows)], label="demo run", with_ci=True)
    assert r"Method & Perplexity & Self-BLEU4 & Zipf Coefficient & Repetition \% & MAUVE \\" in with_ci
    body = tex_rows(with_ci)
    assert body[0] == r"Human & 12.38 {\scriptsize$\pm$0.40} & 0.310 & 0.930 & 0.28 & -- \\"
    assert body[1].startswith(r"top\_p-p=0.95 & \textbf{13.13} {\scriptsize$\pm$0.25} & \textbf{0.320}")
    assert body[1].endswith(r"\textbf{0.900} {\scriptsize$\pm$0.020} \\")
    assert body[2] == r"greedy & 1.50 & 0.500 & 1.000 & 73.66 & 0.100 \\"
    assert r"\label{tab:demo-run}" in with_ci
    without = latex.table_document([(None, rows)], label="demo", with_ci=False)
    assert r"\pm" not in without.split(r"\caption")[0]


LATEX_DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\begin{document}
\input{summary.tex}
\input{odd.tex}
\end{document}
"""


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (optional check; apt-get install texlive-latex-recommended)")
def test_latex_tables_compile(results_dir, tmp_path):
    import subprocess

    from evalharness.report import latex

    odd = [{"run": "human", "metrics": {"perplexity": 1.0, "mauve": 1.0}, "ci": {}},
           {"run": r"weird_run%#&$~^\{}<>|", "metrics": {"perplexity": 2.0, "mauve": 0.5}, "ci": {"mauve": [0.4, 0.6]}}]
    shutil.copy(results_dir / "summary.tex", tmp_path / "summary.tex")
    (tmp_path / "odd.tex").write_text(latex.table_document([("group_1 & co", odd)], label="odd run_names"))
    (tmp_path / "doc.tex").write_text(LATEX_DOCUMENT)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# --- compare ---------------------------------------------------------------------------------

def two_experiments(results_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    folders = []
    for name, model in (("tiny-a", "model-a"), ("tiny-b", "model_b")):
        folder = Path(shutil.copytree(results_dir, tmp_path / name))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["experiment"] = name
        manifest["config"]["model"]["name"] = model
        (folder / "manifest.json").write_text(json.dumps(manifest))
        folders.append(folder)
    return folders[0], folders[1]


def test_compare_two_folders_in_every_format(results_dir, tmp_path, capsys):
    from evalharness.cli import main

    a, b = two_experiments(results_dir, tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = [r["run"] for r in summary(results_dir)]

    rows = json.loads((out / "comparison.json").read_text())
    assert [(r["experiment"], r["run"]) for r in rows] == [(e, r) for e in ("tiny-a", "tiny-b") for r in runs]
    assert {r["model"] for r in rows} == {"model-a", "model_b"}
    assert rows[0]["metrics"] == summary(results_dir)[0]["metrics"]
    best = {m: e["best"] for r in rows for m, e in r["vs_best"].items()}  # paired comparisons, per metric
    assert "mean_length" in best and all(set(e) == {"best", "gap", "gap_ci", "shares_best"}
                                         for r in rows for e in r["vs_best"].values())

    table = list(csv.reader(io.StringIO((out / "comparison.csv").read_text())))
    assert table[0][:5] == ["experiment", "model", "run", "sampler", "params"]
    assert [(r[0], r[2]) for r in table[1:]] == [(r["experiment"], r["run"]) for r in rows]

    markdown = (out / "comparison.md").read_text()
    assert markdown in printed
    assert markdown.count("| tiny-a | model-a | ") == len(runs)

    tex = (out / "comparison.tex").read_text()
    assert r"\textit{tiny-a}" in tex and r"\textit{tiny-b}" in tex
    assert [r.split(" & ")[0] for r in tex_rows(tex)] == [
        "Human" if r == "human" else r.replace("_", r"\_") for _ in "ab" for r in runs]


def test_compare_labels_by_folder_when_experiment_names_clash(results_dir, tmp_path):
    from evalharness.report.compare import comparison_rows

    a = Path(shutil.copytree(results_dir, tmp_path / "gpt2-small"))
    b = Path(shutil.copytree(results_dir, tmp_path / "gpt2-large"))
    assert {r["experiment"] for r in comparison_rows([a, b])} == {"gpt2-small", "gpt2-large"}


# --- errors and helpers ----------------------------------------------------------------------

@pytest.mark.parametrize("case, expected", [
    ("missing", "no such results folder"),
    ("empty", "not an evalharness results folder"),
    ("unscored", "summary.json: missing"),
    ("corrupt", "summary.json: not valid JSON"),
    ("not-rows", "not an evalharness summary"),
])
def test_user_errors_are_one_line(tmp_path, capsys, case, expected):
    from evalharness.cli import main

    folder = tmp_path / "res"
    if case != "missing":
        folder.mkdir()
    if case in ("unscored", "corrupt", "not-rows"):
        (folder / "manifest.json").write_text("{}")
    if case == "corrupt":
        (folder / "summary.json").write_text('[{"run": "human", ')
    if case == "not-rows":
        (folder / "summary.json").write_text('{"run": "human"}')
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err


def test_compare_needs_two_folders(results_dir, capsys):
    from evalharness.cli import main

    assert main(["compare", str(results_dir)]) == 2
    assert "at least two results folders" in capsys.readouterr().err


def test_sweeps_find_each_varied_numeric_parameter():
    from evalharness.report.plots import sweeps

    def row(run, sampler, **params):
        return {"run": run, "sampler": sampler, "params": params, "metrics": {}, "ci": {}}

    rows = [row("human", "human"), row("greedy", "greedy"),
            *[row(f"top_k-k={k}-t={t}", "top_k", k=k, temperature=t) for k in (1, 40, 640) for t in (0.7, 1.0)],
            row("top_p-p=0.9", "top_p", p=0.9, temperature=1.0), row("top_p-p=0.95", "top_p", p=0.95, temperature=1.0),
            row("beam-b=4", "beam", num_beams=4, early_stopping=True)]
    found = {(s.sampler, s.param): s for s in sweeps(rows)}
    assert set(found) == {("top_k", "k"), ("top_k", "temperature"), ("top_p", "p")}
    assert found[("top_k", "k")].log_x and not found[("top_p", "p")].log_x
    assert [label for label, _ in found[("top_k", "k")].series] == ["temperature=0.7", "temperature=1.0"]
    assert [r["params"]["k"] for r in found[("top_k", "k")].series[0][1]] == [1, 40, 640]
    assert [label for label, _ in found[("top_p", "p")].series] == [""]
    assert found[("top_k", "k")].filename == "top_k-k.png"
