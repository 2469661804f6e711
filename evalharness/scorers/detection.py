"""Can a classifier tell two sets of paired texts apart? Grouped cross-validation, out of fold.

The protocol behind the `detectability` scorer, kept apart from it so that it can be tested on
its own: every example belongs to a group (a prompt: its human and its generated continuation),
outer folds never split a group, the classifier's regularisation is chosen by an inner grouped
cross-validation on the outer training part only, and each example is scored by the classifier
that never saw its group. scikit-learn does all splitting and fitting.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

C_GRID = tuple(2.0 ** k for k in range(-6, 7))
"""Inverse regularisation strengths searched: 1/64 .. 64, the grid of OpenAI's GPT-2
output-dataset baseline (baseline.py)."""

ClassifierFactory = Callable[[list], object]
"""inner splits (list of (train, test) index arrays of the outer training part) -> an unfitted
estimator with fit(X, y) and predict_proba(X)."""


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of a seeded, shuffled GroupKFold: no group on both sides."""
    from sklearn.model_selection import GroupKFold

    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def out_of_fold_scores(X: Sequence, y: np.ndarray, groups: np.ndarray, make_classifier: ClassifierFactory,
                       folds: int = 5, inner_folds: int = 3, seed: int = 0) -> np.ndarray:
    """P(label 1) for every example, each from the classifier fitted on the other outer folds.

    `X` is a list (texts) or an array (features), indexed by row. The inner splits handed to
    `make_classifier` are grouped too, so choosing the regularisation never sees a group's two
    texts on both sides either."""
    scores = np.full(len(y), np.nan)
    for train, test in grouped_folds(groups, folds, seed):
        inner = grouped_folds(groups[train], inner_folds, seed)
        classifier = make_classifier(inner)
        classifier.fit(_rows(X, train), y[train])
        scores[test] = classifier.predict_proba(_rows(X, test))[:, 1]
    return scores


def _rows(X: Sequence, index: np.ndarray):
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


def _regularised_logistic_regression(inner: list, seed: int, dual: bool):
    """Logistic regression (liblinear, L2) with C picked from C_GRID by the inner splits'
    accuracy (as OpenAI's baseline picks it; ties go to the smallest C), then refitted on the
    whole outer training part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    # dual=True is liblinear's fast formulation when features outnumber examples (TF-IDF);
    # both formulations reach the same optimum.
    model = LogisticRegression(solver="liblinear", dual=dual, max_iter=1000, random_state=seed)
    return GridSearchCV(model, {"C": list(C_GRID)}, cv=inner, scoring="accuracy")


def tfidf_classifier(seed: int = 0, min_df: int = 1) -> ClassifierFactory:
    """OpenAI's GPT-2 output-dataset baseline: word 1-2-gram TF-IDF (sklearn defaults: lower
    case, tokens of >= 2 word characters) + logistic regression. The vectoriser is fitted on
    the outer training texts only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    def make(inner: list):
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=min_df),
                             _regularised_logistic_regression(inner, seed, dual=True))

    return make


def dense_classifier(seed: int = 0, dual: bool = False) -> ClassifierFactory:
    """Standardised dense features (fitted on the outer training part) + logistic regression
    (`dual`: liblinear's dual formulation, faster when features outnumber training examples)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(inner: list):
        return make_pipeline(StandardScaler(), _regularised_logistic_regression(inner, seed, dual=dual))

    return make


def auc_and_accuracy(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC of the scores (ties count one half) and accuracy of thresholding them at 0.5.

    The AUC is the Mann-Whitney form, (sum of the positives' mid-ranks - n1 (n1 + 1) / 2) /
    (n1 n0): equal to sklearn's roc_auc_score (tested), and fast enough to recompute on every
    bootstrap resample."""
    from scipy.stats import rankdata

    positive = y == 1
    n1, n0 = int(positive.sum()), int((~positive).sum())
    auc = (rankdata(scores)[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(auc), float(np.mean((scores > 0.5) == positive))
