"""HUSE against a step-by-step restatement of the reference's calculate_HUSE; judgements checks."""

import re

import numpy as np
import pytest

from evalharness.scorers import judgements
from evalharness.errors import UserError
from evalharness.scorers.huse import huse_values, loo_knn_correct
from huse_reference import reference_huse, reference_vote


@pytest.mark.parametrize("seed", range(6))
def test_huse_equals_the_reference_exactly_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(17, 90))
    labels = rng.integers(0, 2, size=n)
    # means of 1-6 ratings from 1-5 raters: many exact ties in the judgement feature
    hj = np.array([rng.integers(1, 7, size=rng.integers(1, 6)).mean() for _ in range(n)]) + 0.5 * labels
    logp = rng.normal(-3.0, 1.0, size=n) * rng.integers(1, 40, size=n) - labels
    lengths = rng.integers(1, 40, size=n)
    if seed % 2:
        logp[rng.integers(0, n, size=3)] = -1000.0  # the reference's stand-in for -inf
    ours = huse_values(hj, logp / lengths, labels)
    assert (ours["huse"], ours["huse_q"], ours["huse_d"]) == reference_huse(hj, logp, labels, lengths)


def test_the_loo_knn_counts_ties_and_breaks_a_tied_vote_towards_human():
    # item 0 (label 1) sees 16 training items at distance <= its 16th smallest: 8 human, 8 model
    features = np.array([[0.0]] + [[1.0]] * 8 + [[1.0]] * 8 + [[5.0]] * 3)
    labels = np.array([1] + [0] * 8 + [1] * 8 + [1] * 3)
    assert reference_vote(features[1:], labels[1:], features[0]) == 0
    assert not loo_knn_correct(features, labels)[0]
    assert list(loo_knn_correct(features, labels)) == [
        bool(reference_vote(np.delete(features, i, 0), np.delete(labels, i), features[i]) == labels[i])
        for i in range(len(labels))]


def test_copies_of_the_left_out_item_do_not_vote_for_it():
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(30, 2)), rng.integers(0, 2, size=30)
    doubled = np.concatenate([features, features]), np.concatenate([labels, labels])
    groups = np.concatenate([np.arange(30), np.arange(30)])
    naive = loo_knn_correct(*doubled)  # each copy's twin at distance 0 votes for it
    grouped = loo_knn_correct(*doubled, groups=groups)
    assert naive.mean() >= grouped.mean()
    assert list(grouped[:30]) == list(grouped[30:])


def test_indistinguishable_texts_score_near_one_and_separable_ones_near_zero():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    same = huse_values(rng.normal(4, 1, 400), rng.normal(-3, 1, 400), labels)
    apart = huse_values(np.where(labels == 1, 1.5, 5.0) + rng.normal(0, 0.3, 400),
                        rng.normal(-3, 1, 400) - 4 * labels, labels)
    assert same["huse"] > 0.85 and apart["huse"] < 0.05 and apart["huse_q"] < 0.05


# --- judgements.csv ------------------------------------------------------------------------

RUNS, PROMPTS = ("human", "pure", "top_k-k=40"), ("00000", "00001", "00002")


def write(tmp_path, body, header="run,prompt_id,annotator,typicality"):
    path = tmp_path / "judgements.csv"
    path.write_text(header + "\n" + body)
    return path


def test_judgements_are_read_and_averaged(tmp_path):
    path = write(tmp_path, "human,00000,a,5\nhuman,00000,b,6\npure,00001,a,2\n")
    rated = judgements.load(path, RUNS, PROMPTS)
    assert rated.mean_typicality("human") == {"00000": 5.5}
    assert rated.mean_typicality("pure") == {"00001": 2.0}
    assert rated.mean_typicality("top_k-k=40") == {}


@pytest.mark.parametrize("rows,line,problem", [
    ("human,00000,a,5\n,00000,a,3\n", 3, "unknown run ''"),
    ("human,00009,a,5\n", 2, "unknown prompt_id '00009'"),
    ("human,00000,a,7\n", 2, "typicality must be an integer from 1 to 6"),
    ("human,00000,a,0\n", 2, "typicality must be an integer from 1 to 6"),
    ("human,00000,a,4.5\n", 2, "typicality must be an integer from 1 to 6"),
    ("human,00000,a,\n", 2, "typicality must be an integer from 1 to 6"),
    ("human,00000,,4\n", 2, "empty annotator"),
    ("human,00000,a,4\npure,00000,a,4\nhuman,00000,a,2\n", 4, "annotator 'a' rated run 'human' prompt '00000' twice .first on line 2"),
])
def test_a_bad_row_names_file_line_and_problem(tmp_path, rows, line, problem):
    path = write(tmp_path, rows)
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}, line {line}: {problem}"):
        judgements.load(path, RUNS, PROMPTS)


def test_runs_not_in_the_experiment_are_skipped_with_one_note(tmp_path, caplog):
    """A stale run (its folder left over, or dropped from the config) must not block HUSE for the others."""
    path = write(tmp_path, "human,00000,a,5\nbeam,00000,a,3\nbeam,00001,b,9\npure,00001,a,2\n")
    with caplog.at_level("INFO", logger="evalharness.scorers.judgements"):
        rated = judgements.load(path, RUNS, PROMPTS)
    assert rated.ratings == {("human", "00000"): (5,), ("pure", "00001"): (2,)}
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and notes[0].startswith("note: huse: ") and "beam (2 rows)" in notes[0]


def test_missing_or_empty_judgements_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match=r"^huse: no judgements at .*evalharness annotate"):
        judgements.load(tmp_path / "judgements.csv", RUNS, PROMPTS)
    with pytest.raises(UserError, match=r"^huse: .* holds no judgements; .*annotate export"):
        judgements.load(write(tmp_path, ""), RUNS, PROMPTS)
    with pytest.raises(UserError, match=r"line 1: missing column\(s\) typicality"):
        judgements.load(write(tmp_path, "", header="run,prompt_id,annotator"), RUNS, PROMPTS)


def test_the_judgements_option_must_be_a_path():
    from evalharness.experiment.config import parse

    with pytest.raises(UserError, match=r"scorers\[0\] \(huse\)\.judgements: must be the path of a CSV file"):
        parse({"name": "x", "model": {"name": "m"}, "data": {"source": "d.txt"}, "samplers": ["pure"],
               "scorers": [{"name": "huse", "judgements": 3}]})
