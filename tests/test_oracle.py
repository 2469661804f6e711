"""The oracle analysis: rank / cumulative probability against a naive per-token loop, ties,
agreement with the samplers' supports, scored positions in both modes, the CLI end to end."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from evalharness.oracle import run as oracle_run
from evalharness.oracle import stats as oracle_stats
from evalharness.report import oracle_coverage
from evalharness.cli import main
from evalharness.experiment.data import read_documents
from evalharness.generation.models import load_model
from evalharness.generation.ranks import rank_and_mass
from evalharness.oracle.plan import OracleSettings, Plan, plan_documents
from evalharness.oracle.score import score_batches
from evalharness.samplers.top_k import TopK
from evalharness.samplers.top_p import TopP
from helpers import write_experiment, write_jsonl

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2" / "test.txt"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir), "cpu")


@pytest.fixture(scope="module")
def docs(corpus_jsonl):
    from evalharness.experiment.config import DataConfig
    return read_documents(DataConfig(source=str(corpus_jsonl)))


def settings(mode="window", context=6, num_tokens=None, batch_size=7) -> OracleSettings:
    return OracleSettings(context_tokens=context, mode=mode, num_tokens=num_tokens, batch_size=batch_size,
                          device="cpu")


def score(loaded, docs, s: OracleSettings, seed=0, last: int | None = None):
    """{(doc_id, position): record} for every scored token (only up to position `last` if given)."""
    plan = plan_documents(docs, loaded.tokenizer, seed, s, loaded.max_positions)
    if last is not None:
        plan = Plan([replace(d, stop=min(d.stop, last + 1)) for d in plan.docs if d.start <= last])
    out = {}
    for batch, scores in score_batches(loaded.model, plan, s, loaded.pad_id):
        for i, (d, pos, tok) in enumerate(zip(batch.doc_index.tolist(), batch.position.tolist(),
                                              batch.targets.tolist())):
            out[plan.docs[d].doc_id, pos] = dict(token=tok, rank=int(scores.rank[i]), p=float(scores.p[i]),
                                                 prob=float(scores.prob[i]), above=float(scores.mass_above[i]))
    return plan, out


def naive(logits: np.ndarray, target: int) -> dict:
    """Sort the vocabulary by logit (descending); the true token's tied block starts at its
    rank; p sums the probabilities of everything up to the end of that block."""
    order = np.argsort(-logits, kind="stable")
    values = logits[order]
    first = int(np.flatnonzero(values == logits[target])[0])
    last = int(np.flatnonzero(values == logits[target])[-1])
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    return dict(rank=first + 1, p=float(probs[order[:last + 1]].sum()), above=float(probs[order[:first]].sum()),
                prob=float(probs[target]))


# --- the measurement against a naive per-token computation ----------------------------------------

def test_window_mode_matches_a_naive_forward_pass_per_token(loaded, docs):
    s = settings(context=6, num_tokens=45, batch_size=7)  # 7: batches straddle documents
    plan, got = score(loaded, docs, s)
    assert len(got) == 45
    with torch.inference_mode():
        for doc in plan.docs:
            for i in range(doc.start, doc.stop):
                window = torch.tensor(doc.ids[i - 6:i])[None]  # exactly the 6 preceding tokens
                logits = loaded.model(input_ids=window).logits[0, -1].float().numpy()
                want, have = naive(logits, doc.ids[i]), got[doc.doc_id, i]
                assert have["token"] == doc.ids[i]
                assert have["rank"] == want["rank"]
                for key in ("p", "prob", "above"):
                    assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9)


def test_ties_share_the_best_rank_and_p_includes_the_whole_tied_block():
    z = torch.tensor([[2.0, 1.0, 1.0, 0.5, 1.0, -math.inf]] * 5 + [[0.3] * 6])
    targets = torch.tensor([2, 0, 3, 5, 4, 1])
    q = torch.softmax(z[0].double(), dim=-1).tolist()
    got = rank_and_mass(z, targets)
    assert got.rank.tolist() == [2, 1, 5, 6, 2, 1]
    expected_p = [q[0] + 3 * q[1], q[0], q[0] + 3 * q[1] + q[3], 1.0, q[0] + 3 * q[1], 1.0]
    expected_above = [q[0], 0.0, q[0] + 3 * q[1], 1.0, q[0], 0.0]
    assert got.p.tolist() == pytest.approx(expected_p, rel=1e-12)
    assert got.mass_above.tolist() == pytest.approx(expected_above, rel=1e-12, abs=1e-15)
    assert got.prob.tolist() == pytest.approx([q[2], q[0], q[3], 0.0, q[4], 1 / 6], rel=1e-12)
    for row, t in enumerate(targets.tolist()):  # the naive sort agrees on every row
        want = naive(z[row].numpy(), t)
        assert (want["rank"], want["p"]) == (got.rank[row], pytest.approx(got.p[row].item(), rel=1e-12))


def test_a_rank_one_token_has_p_equal_to_its_own_probability(loaded, docs):
    ids = torch.tensor([[int(t) for t in loaded.tokenizer(docs[0][1])["input_ids"][:40]]])
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids).logits[0]
    got = rank_and_mass(logits, logits.argmax(dim=-1))
    assert got.rank.tolist() == [1] * 40
    assert torch.equal(got.p, got.prob)  # exactly, not approximately
    assert float(got.mass_above.abs().max()) == 0.0


def test_coverage_rules_agree_with_the_top_k_and_top_p_samplers():
    gen = torch.Generator().manual_seed(0)
    z = torch.randint(-6, 6, (300, 40), generator=gen).float() / 2  # coarse: many ties
    targets = torch.randint(0, 40, (300,), generator=gen)
    got = rank_and_mass(z, targets)
    rows = torch.arange(300)
    for k in (1, 2, 3, 5, 8, 13, 40):
        kept = torch.isfinite(TopK(k=k).process(z)[rows, targets])
        assert torch.equal(kept, oracle_coverage.topk_allows(got.rank, k)), k
    for p in oracle_stats.P_GRID[::3]:
        kept = torch.isfinite(TopP(p=p).process(z)[rows, targets])
        assert torch.equal(kept, oracle_coverage.topp_allows(got.mass_above, p)), p
    cov = oracle_stats.coverage(got.rank.numpy(), got.mass_above.numpy(), 40)
    at_five = cov["top_k"]["fraction"][cov["top_k"]["K"].index(5)]
    assert at_five == pytest.approx(torch.isfinite(TopK(k=5).process(z)[rows, targets]).float().mean().item())


# --- which tokens are scored --------------------------------------------------------------------

def test_window_mode_scores_every_token_after_the_first_L_in_seeded_document_order(loaded, docs):
    plan = plan_documents(docs, loaded.tokenizer, 3, settings(context=10), loaded.max_positions)
    order = list(range(len(docs)))
    random.Random(3).shuffle(order)
    assert [d.doc_id for d in plan.docs] == [docs[i][0] for i in order]
    for doc in plan.docs:
        assert (doc.start, doc.stop) == (10, len(doc.ids))
    cut = plan_documents(docs, loaded.tokenizer, 3, settings(context=10, num_tokens=250), loaded.max_positions)
    assert cut.num_tokens == 250 and [d.ids for d in cut.docs] == [d.ids for d in plan.docs[:len(cut.docs)]]


def test_prefix_mode_scores_from_position_one_up_to_the_model_length(loaded, docs):
    m = loaded.max_positions
    plan = plan_documents(docs, loaded.tokenizer, 0, settings("prefix"), m)
    assert any(len(d.ids) > m + 1 for d in plan.docs)  # the corpus does exercise the limit
    for doc in plan.docs:
        assert (doc.start, doc.stop) == (1, min(len(doc.ids), m + 1))
    assert plan.tokens_beyond_max_length == sum(max(0, len(d.ids) - m - 1) for d in plan.docs)


def test_window_and_prefix_agree_where_the_whole_prefix_fits_in_the_window(loaded, docs):
    few = docs[:5]
    for context in (6, loaded.max_positions):  # the last token prefix mode scores sees M tokens
        _, window = score(loaded, few, settings("window", context=context, batch_size=4), last=context + 3)
        _, prefix = score(loaded, few, settings("prefix", batch_size=3), last=context + 3)
        shared = [key for key in window if key[1] == context]
        assert len(shared) == sum(1 for _, pos in prefix if pos == context) > 0
        for key in shared:
            assert window[key]["rank"] == prefix[key]["rank"]
            assert window[key]["p"] == pytest.approx(prefix[key]["p"], rel=1e-4)
        assert min(pos for _, pos in prefix) == 1 and min(pos for _, pos in window) == context


def test_prefix_mode_matches_a_naive_pass_over_the_whole_prefix(loaded, docs):
    plan, got = score(loaded, docs[:3], settings("prefix", num_tokens=150, batch_size=2))
    doc = plan.docs[1]
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor(doc.ids[:doc.stop - 1])[None]).logits[0].float().numpy()
    for i in range(doc.start, doc.stop, 9):
        want = naive(logits[i - 1], doc.ids[i])
        assert got[doc.doc_id, i]["rank"] == want["rank"]
        assert got[doc.doc_id, i]["p"] == pytest.approx(want["p"], rel=1e-5)


# --- statistics ---------------------------------------------------------------------------------

def test_summary_statistics_histograms_and_curves():
    rank = np.array([1, 1, 2, 3, 3, 7, 50, 400])
    p = np.array([0.1, 0.2, 0.5, 0.6, 0.6, 0.9, 0.99, 1.0])
    summary = oracle_stats.summarize({"rank": rank, "p": p, "mass_above": p - 0.05}, vocab_size=400)
    assert summary["count"] == 8
    assert summary["k"]["median"] == 3 and summary["k"]["max"] == 400 and summary["k"]["mean"] == rank.mean()
    assert summary["k"]["quantiles"]["90"] == pytest.approx(np.percentile(rank, 90))
    hist = summary["histograms"]["k"]
    assert hist["edges"][:3] == [1, 2, 4] and hist["edges"][-2:] == [256, 401] and hist["counts"][0] == 2
    assert sum(hist["counts"]) == 8 and sum(summary["histograms"]["p"]["counts"]) == 8
    top_k = summary["coverage"]["top_k"]
    assert top_k["K"][0] == 1 and top_k["K"][-1] == 400 and 40 in top_k["K"]
    assert top_k["fraction"][0] == 0.25 and top_k["fraction"][-1] == 1.0
    assert np.all(np.diff(top_k["fraction"]) >= 0)
    top_p = summary["coverage"]["top_p"]
    assert top_p["P"][0] == 0.01 and top_p["P"][-1] == 1.0 and top_p["fraction"][-1] == 1.0


# --- the command line ---------------------------------------------------------------------------

def test_cli_writes_the_results_and_refuses_bad_input(tiny_model_dir, corpus_jsonl, loaded, tmp_path, capsys):
    yaml_path = write_experiment(tmp_path / "tiny.yaml", tiny_model_dir, corpus_jsonl, "[greedy]",
                                 extra="oracle: {context_tokens: 5, num_tokens: 90, batch_size: 16}\n")
    out = tmp_path / "oracle"
    assert main(["oracle", str(yaml_path), "--output", str(out), "--num-tokens", "120"]) == 0
    for name in oracle_run.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "oracle.json").read_text())
    lines = (out / "oracle_tokens.jsonl").read_text().splitlines()
    assert summary["count"] == len(lines) == 120  # the flag overrides the YAML
    assert summary["settings"]["context_tokens"] == 5 and summary["settings"]["tokens_per_second"] > 0
    record = json.loads(lines[0])
    assert set(record) == {"doc_id", "position", "token_id", "token", "rank", "p", "prob", "mass_above"}
    assert record["position"] == 5 and record["token"] == loaded.tokenizer.decode([record["token_id"]])
    assert "oracle: 120 tokens" in capsys.readouterr().out

    assert main(["oracle", str(yaml_path), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["oracle", str(yaml_path), "--output", str(out), "--overwrite", "--mode", "prefix"]) == 0
    assert json.loads((out / "oracle.json").read_text())["settings"]["mode"] == "prefix"
    too_long = main(["oracle", str(yaml_path), "--output", str(tmp_path / "x"), "--context-tokens", "129"])
    err = capsys.readouterr().err
    assert too_long == 2 and "oracle.context_tokens" in err and "128" in err and len(err.splitlines()) == 1
    assert main(["oracle", str(yaml_path), "--num-tokens", "0"]) == 2
    assert not (tmp_path / "x").exists()


def test_wikitext_when_present(tiny_model_dir, tmp_path):
    if not WIKITEXT.is_file():
        pytest.skip(f"{WIKITEXT} not present")
    yaml_path = write_experiment(tmp_path / "wiki.yaml", tiny_model_dir, WIKITEXT, "[greedy]",
                                 extra="oracle: {context_tokens: 15, num_tokens: 200}\n")
    assert main(["oracle", str(yaml_path), "--output", str(tmp_path / "wiki")]) == 0
    summary = json.loads((tmp_path / "wiki" / "oracle.json").read_text())
    assert summary["count"] == 200 and summary["settings"]["source"] == str(WIKITEXT)
    assert 1 <= summary["k"]["min"] <= summary["k"]["median"] <= summary["k"]["max"] <= summary["settings"]["vocab_size"]


def test_sources_without_scorable_tokens_are_one_line_errors(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    short = write_jsonl(tmp_path / "short.jsonl", ["The river was long.", "A king wrote a song."])
    for data, needle in ((empty, "holds no documents"), (short, "no document of")):
        yaml_path = write_experiment(tmp_path / "e.yaml", tiny_model_dir, data, "[greedy]")
        assert main(["oracle", str(yaml_path), "--output", str(tmp_path / "out"), "--context-tokens", "20"]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.splitlines()) == 1
