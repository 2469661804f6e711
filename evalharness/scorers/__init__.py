"""Stage `scorers` (a plugin family): one module per metric family, each scoring a run's
generations (and the human row) with a 95% bootstrap interval over prompts.

Entry point: SCORERS, the registry (name -> class); experiment.scoring runs them over every run.
Adding one = a module + one import line here. Their helpers live beside them: featurize (MAUVE's
and detectability's text features), detection and finetune_detector (detectability's
classifiers), judgements (judgements.csv for HUSE)."""

from evalharness.scorers.base import SCORERS, Scorer, ScoringContext, bootstrap_ci  # noqa: F401
from evalharness.scorers import length  # noqa: F401
from evalharness.scorers import perplexity  # noqa: F401
from evalharness.scorers import judge_perplexity  # noqa: F401
from evalharness.scorers import repetition  # noqa: F401
from evalharness.scorers import self_bleu  # noqa: F401
from evalharness.scorers import zipf  # noqa: F401
from evalharness.scorers import distinct  # noqa: F401
from evalharness.scorers import mauve  # noqa: F401
from evalharness.scorers import coherence  # noqa: F401
from evalharness.scorers import human_support  # noqa: F401
from evalharness.scorers import huse  # noqa: F401
from evalharness.scorers import judge_typicality  # noqa: F401
from evalharness.scorers import detectability  # noqa: F401
from evalharness.scorers import evaluate_metric  # noqa: F401
