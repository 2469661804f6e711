"""HUSE against a step-by-step restatement of the reference's calculate_HUSE; judgements checks."""

import re

import numpy as np
import pytest
from sklearn.model_selection import LeaveOneOut

from evalharness import judgements
from evalharness.errors import UserError
from evalharness.scorers.huse import huse_values, loo_knn_correct


# --- the reference, restated operation by operation (hughbzhang/HUSE, code/utils.py) ----------

def reference_vote(train_x, train_y, point, k=15):
    """KNNClassifier.predict: squared distances, cut-off at the (k+1)-th smallest, all at or
    below it vote, bincount().argmax() (ties -> the smaller label)."""
    dists = np.sum((train_x - point) ** 2.0, axis=1)
    cut = np.sort(dists)[k]
    return np.bincount(train_y[dists <= cut]).argmax()


def reference_loo_accuracy(x, y):
    """get_accuracy: sklearn's LeaveOneOut, one prediction per left-out item."""
    hits = []
    for train, test in LeaveOneOut().split(x):
        hits.append(reference_vote(x[train], y[train], x[test]) == y[test][0])
    return hits


def reference_huse(hj, model_logprobs, labels, lengths):
    """calculate_HUSE + get_stats: features (hj/std, (logp/len)/std); HUSE = 1 - (2 acc - 1),
    HUSE-Q = 1 - (2 acc_hj - 1), HUSE-D = 1 - (2 acc - 1) + (2 acc_hj - 1)."""
    y = np.array(labels)
    per_token = np.array(model_logprobs) / np.array(lengths)
    x = np.vstack([hj / np.std(hj), per_token / np.std(per_token)]).transpose()
    acc_all = np.mean(reference_loo_accuracy(x, y))
    acc_hum = np.mean(reference_loo_accuracy(x[:, 0][:, np.newaxis], y))
    half_tv, quality = 2.0 * acc_all - 1.0, 2.0 * acc_hum - 1.0
    return 1. - half_tv, 1. - quality, 1 - half_tv + quality


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
    ("human,00000,a,5\nbeam,00000,a,3\n", 3, "unknown run 'beam'"),
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


def test_missing_or_empty_judgements_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match=r"^huse: no judgements at .*evalharness annotate"):
        judgements.load(tmp_path / "judgements.csv", RUNS, PROMPTS)
    with pytest.raises(UserError, match=r"^huse: .* holds no judgements; .*annotate export"):
        judgements.load(write(tmp_path, ""), RUNS, PROMPTS)
    with pytest.raises(UserError, match=r"line 1: missing column\(s\) typicality"):
        judgements.load(write(tmp_path, "", header="run,prompt_id,annotator"), RUNS, PROMPTS)
