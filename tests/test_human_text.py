"""The sampler's probability of human text, and HUSE end to end on a tiny model with simulated raters."""

import csv
import json
import logging
import math
import re

import numpy as np
import pytest
import torch

from evalharness.experiment import config
from evalharness.generation import human_logprobs
from evalharness.cli import main
from evalharness.experiment.data import build_prompts, read_documents
from evalharness.generation.decoding import teacher_forced
from evalharness.errors import UserError
from evalharness.generation.models import load_model
from evalharness.generation.ranks import rank_and_mass
from evalharness.report.oracle_coverage import topk_allows, topp_allows
from evalharness.experiment.pipeline import RunOptions, run_experiment
from evalharness.samplers import SAMPLERS
from helpers import write_experiment
from huse_reference import reference_huse


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def prompts(loaded, corpus_jsonl):
    cfg = config.DataConfig(source=str(corpus_jsonl), num_prompts=6, context_tokens=8, max_new_tokens=12)
    return build_prompts(read_documents(cfg), loaded.tokenizer, cfg, 0, loaded.eos_id, None)


def coverage(records):
    values = [v for r in records for v in r["logprobs"]]
    return sum(v is not None for v in values) / len(values)


def oracle_columns(loaded, prompts):
    """The oracle's rank and mass above for the same tokens given the same contexts."""
    forced = teacher_forced(loaded.model, [p.context_ids for p in prompts], [p.human_ids for p in prompts],
                            loaded.pad_id, "cpu")
    logits = torch.cat([forced.logits[i, s:s + len(p.human_ids)] for i, (s, p) in enumerate(zip(forced.starts, prompts))])
    targets = torch.tensor([t for p in prompts for t in p.human_ids])
    return rank_and_mass(logits, targets)


def test_human_coverage_of_top_k_and_top_p_is_the_oracles(loaded, prompts):
    scores = oracle_columns(loaded, prompts)
    for k in (1, 3, 10, 40, 200):
        records = human_logprobs.sampler_logprobs_of_human(loaded, SAMPLERS.get("top_k")(k=k), prompts)
        assert coverage(records) == float(topk_allows(scores.rank, k).double().mean())
    for p in (0.3, 0.6, 0.9):
        records = human_logprobs.sampler_logprobs_of_human(loaded, SAMPLERS.get("top_p")(p=p), prompts)
        assert coverage(records) == float(topp_allows(scores.mass_above, p).double().mean())
    greedy = human_logprobs.sampler_logprobs_of_human(loaded, SAMPLERS.get("greedy")(), prompts)
    assert coverage(greedy) == float(topk_allows(scores.rank, 1).double().mean())  # no exact ties here
    assert {v for r in greedy for v in r["logprobs"]} <= {0.0, None}
    for sampler in (SAMPLERS.get("pure")(), SAMPLERS.get("top_k")(k=3, interpolation=0.1)):
        assert coverage(human_logprobs.sampler_logprobs_of_human(loaded, sampler, prompts)) == 1.0


def test_human_logits_are_computed_once_per_batch_and_change_nothing(loaded, prompts, monkeypatch):
    samplers = [SAMPLERS.get("top_p")(p=0.9), SAMPLERS.get("typical")(p=0.9), SAMPLERS.get("greedy")()]
    fresh = [human_logprobs.sampler_logprobs_of_human(loaded, s, prompts) for s in samplers]
    passes = []
    real = human_logprobs.human_token_logits
    monkeypatch.setattr(human_logprobs, "human_token_logits", lambda *a: passes.append(1) or real(*a))
    shared = human_logprobs.HumanLogits()
    assert [human_logprobs.sampler_logprobs_of_human(loaded, s, prompts, shared) for s in samplers] == fresh
    assert len(passes) == 1
    over_budget = human_logprobs.HumanLogits(budget_bytes=0)  # too big to keep: recomputed, same numbers
    assert [human_logprobs.sampler_logprobs_of_human(loaded, s, prompts, over_budget) for s in samplers] == fresh
    assert len(passes) == 1 + len(samplers) and not over_budget.kept


def test_human_logprobs_are_the_samplers_own_distribution_token_by_token(loaded, prompts):
    """Against a naive pass: one forward per token over the whole prefix, no batching, no padding."""
    sampler = SAMPLERS.get("top_p")(p=0.8, temperature=0.9, interpolation=0.05)
    records = human_logprobs.sampler_logprobs_of_human(loaded, sampler, prompts[:3])
    for prompt, record in zip(prompts[:3], records):
        assert record["prompt_id"] == prompt.prompt_id and len(record["logprobs"]) == len(prompt.human_ids)
        for j, token in enumerate(prompt.human_ids):
            with torch.no_grad():
                logits = loaded.model(torch.tensor([list(prompt.context_ids) + list(prompt.human_ids[:j])])).logits
            expected = torch.log_softmax(sampler.process(logits[:, -1].float()), dim=-1)[0, token].item()
            assert record["logprobs"][j] == pytest.approx(expected, abs=1e-4)


SAMPLER_GRID = ("[greedy, pure, {name: top_k, k: 5}, {name: top_k, k: 5, interpolation: 0.1}, "
                "{name: stochastic_beam, num_beams: 2}]")
JUDGED = {"human": 5.0, "greedy": 2.0, "pure": 4.4, "top_k-k=5-interpolation=0.1": 3.0,
          "stochastic_beam-num_beams=2": 4.0}


def simulated_judgements(path, prompt_ids, runs=JUDGED, annotators=3, seed=0):
    """Three raters per text: the run's typical rating plus noise, rounded into 1-6."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "prompt_id", "annotator", "typicality"])
        for run, centre in runs.items():
            for pid in prompt_ids:
                for a in range(annotators):
                    writer.writerow([run, pid, f"rater{a}", int(np.clip(round(centre + rng.normal(0, 1)), 1, 6))])


@pytest.fixture(scope="module")
def generated(tiny_model_dir, corpus_jsonl, tmp_path_factory):
    """The grid generated; HUSE stopped the run for want of judgements (the error it raised)."""
    folder = tmp_path_factory.mktemp("table1")
    yaml_path = write_experiment(folder / "tiny.yaml", tiny_model_dir, corpus_jsonl, SAMPLER_GRID,
                                 num_prompts=12, max_new=8, scorers="[huse]")
    cfg, out = config.load(yaml_path), folder / "results"
    with pytest.raises(UserError) as stopped:
        run_experiment(cfg, RunOptions(output=out))
    return cfg, out, stopped.value


@pytest.fixture(scope="module")
def scored(generated):
    """The same folder scored, with simulated judgements; the messages the package logged meanwhile."""
    cfg, out, _ = generated
    prompt_ids = [json.loads(line)["prompt_id"] for line in (out / "prompts.jsonl").read_text().splitlines()]
    simulated_judgements(out / "judgements.csv", prompt_ids)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("evalharness")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run_experiment(cfg, RunOptions(output=out))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return cfg, out, [r.getMessage() for r in records]


@pytest.fixture(scope="module")
def experiment(scored):
    """The same folder scored, with simulated judgements."""
    return scored[:2]


def test_huse_without_judgements_stops_after_generating_and_says_how_to_get_them(generated):
    cfg, out, error = generated
    assert re.match(r"^huse: no judgements at .*judgements\.csv; .*evalharness annotate", str(error)), str(error)
    assert len((out / "pure" / "generations.jsonl").read_text().splitlines()) == 12
    for run in ("pure", "top_k-k=5", "top_k-k=5-interpolation=0.1"):
        assert len(human_logprobs.read(out / run)) == 12
    assert not human_logprobs.path(out / "stochastic_beam-num_beams=2").exists()  # no per-step distribution


def test_huse_rows_match_the_reference_on_the_files(scored):
    cfg, out, notes = scored
    assert "huse" not in rows_of(out)["greedy"]["metrics"]  # judged, but not a sampling distribution
    assert "note: huse: run greedy has judgements but no HUSE: its sampler is not a sampling distribution" in notes
    rows = rows_of(out)
    assert "huse" not in rows["human"]["metrics"] and "huse" not in rows["top_k-k=5"]["metrics"]
    assert "huse" not in rows["stochastic_beam-num_beams=2"]["metrics"]  # judged, but no human-text probability
    for run in ("pure", "top_k-k=5-interpolation=0.1"):
        expected = reference_from_files(out, run)
        assert tuple(rows[run]["metrics"][m] for m in ("huse", "huse_q", "huse_d")) == expected
        low, high = rows[run]["ci"]["huse"]
        assert low <= high
    assert rows["pure"]["metrics"]["human_coverage"] == 1.0
    assert rows["top_k-k=5"]["metrics"]["human_coverage"] < 1.0
    assert rows["top_k-k=5"]["metrics"]["human_perplexity_sampler"] == "inf"  # JSON has no infinity
    assert "human_perplexity_sampler" not in rows["top_k-k=5"]["ci"]
    assert math.isfinite(rows["top_k-k=5-interpolation=0.1"]["metrics"]["human_perplexity_sampler"])
    table = (out / "summary.md").read_text()
    assert "huse" in table.splitlines()[4] and "∞" in table
    assert r"HUSE" in (out / "summary.tex").read_text() and r"$\infty$" not in (out / "summary.tex").read_text()
    assert 'id="human-text-table"' in (out / "report.html").read_text()


def rows_of(out):
    return {row["run"]: row for row in json.loads((out / "summary.json").read_text())}


def reference_from_files(out, run):
    """Features rebuilt from the files alone, fed to the reference."""
    ratings = {}
    with open(out / "judgements.csv") as handle:
        for row in csv.DictReader(handle):
            ratings.setdefault((row["run"], row["prompt_id"]), []).append(int(row["typicality"]))
    texts = {json.loads(line)["prompt_id"]: json.loads(line)["human_text"]
             for line in (out / "prompts.jsonl").read_text().splitlines()}
    hj, logp, labels, lengths = [], [], [], []
    for line in (out / run / "human_logprobs.jsonl").read_text().splitlines():
        record = json.loads(line)
        total = -1000.0 if None in record["logprobs"] else sum(record["logprobs"])
        hj.append(np.mean(ratings[("human", record["prompt_id"])]))
        logp.append(total), labels.append(0), lengths.append(len(texts[record["prompt_id"]].split(" ")))
    for line in (out / run / "generations.jsonl").read_text().splitlines():
        record = json.loads(line)
        hj.append(np.mean(ratings[(run, record["prompt_id"])]))
        logp.append(sum(record["logprobs_sampler"])), labels.append(1), lengths.append(len(record["text"].split(" ")))
    return reference_huse(np.array(hj), logp, labels, lengths)


def test_a_bad_judgement_stops_with_file_line_and_problem(generated, tmp_path, capsys):
    cfg, out, _ = generated
    bad = tmp_path / "ratings.csv"
    bad.write_text("run,prompt_id,annotator,typicality\nhuman,00000,a,5\npure,00000,a,9\n")
    yaml_path = tmp_path / "bad.yaml"
    yaml_path.write_text(open(cfg.path).read().replace("scorers: [huse]", f"scorers: [{{name: huse, judgements: {bad}}}]"))
    assert main(["run", str(yaml_path), "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad}, line 3: typicality must be an integer from 1 to 6 "
                                               "(1 Invalid, 2 Rare, 3 Specific, 4 Average, 5 Typical, "
                                               "6 Very typical); got '9'")


def test_the_report_shows_human_coverage_beside_the_oracle(experiment):
    """After `evalharness oracle` into the results folder, report.html puts the oracle's coverage
    for the same sampler next to human_coverage (exact from oracle_tokens.jsonl)."""
    from evalharness.oracle.plan import OracleSettings
    from evalharness.oracle.run import run_oracle
    from evalharness.report.oracle_coverage import read_token_columns, topk_allows
    from evalharness.report.folder import write_report
    from evalharness.report.summary import format_value

    cfg, out = experiment
    run_oracle(cfg, OracleSettings(context_tokens=6, mode="window", num_tokens=300, batch_size=64, device="cpu"),
               out / "oracle")
    write_report(out)
    table = (out / "report.html").read_text().split('id="human-text-table"', 1)[1].split("</table>", 1)[0]
    cells = {row.split("</td>")[0].split("<td>")[-1]: [c.split("</td>")[0] for c in row.split("<td>")[2:]]
             for row in table.split("<tr>")[2:]}
    rank = np.asarray(read_token_columns(out / "oracle")["rank"])
    assert cells["top_k-k=5"][2] == format_value("human_coverage", float(topk_allows(rank, 5).mean()))
    assert cells["pure"][0].startswith("100.00%") and cells["pure"][2] == "100.00%"
    assert "stochastic_beam-num_beams=2" not in cells  # no per-step distribution, no row
