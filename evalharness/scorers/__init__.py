"""Scorers: one module per metric family. Adding one = a module + one import line here."""

from evalharness.scorers.base import SCORERS, Scorer, ScoringContext, bootstrap_ci  # noqa: F401
from evalharness.scorers import length  # noqa: F401
from evalharness.scorers import perplexity  # noqa: F401
from evalharness.scorers import repetition  # noqa: F401
from evalharness.scorers import self_bleu  # noqa: F401
from evalharness.scorers import zipf  # noqa: F401
from evalharness.scorers import distinct  # noqa: F401
from evalharness.scorers import mauve  # noqa: F401
from evalharness.scorers import human_support  # noqa: F401
from evalharness.scorers import huse  # noqa: F401
from evalharness.scorers import detectability  # noqa: F401
from evalharness.scorers import evaluate_metric  # noqa: F401
