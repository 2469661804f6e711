"""The HUSE reference (hughbzhang/HUSE, code/utils.py: calculate_HUSE, get_accuracy, get_stats,
KNNClassifier), restated operation by operation, to test evalharness's vectorised HUSE against."""

import numpy as np
from sklearn.model_selection import LeaveOneOut


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


def reference_lengths_and_logps(texts, logps):
    """extract and get_data (code/full_example_utils.py): each text's length is
    `len(OUT.split(' '))`, and a log-probability p with np.isinf(p) becomes -1000 (before
    calculate_HUSE divides by the length)."""
    length_list = [len(text.split(' ')) for text in texts]
    p_list = [-1000 if np.isinf(p) else p for p in logps]
    return p_list, length_list
