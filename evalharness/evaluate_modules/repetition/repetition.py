"""Repetition at the end of a text (both rules of Holtzman et al. 2019) as a Hugging Face
evaluate module: exactly evalharness's `repetition` scorer."""

import evaluate

from evalharness.evaluate_modules import HOLTZMAN_2020, TOKEN_INPUTS, score_tokens, token_metric_info

_CITATION = """\
""" + HOLTZMAN_2020

_DESCRIPTION = """\
The share of texts that end in a repetition loop, by two rules of Holtzman et al. (2019):
- repetition (the authors' code, metrics/repetition.py): for n = 1..max_n count how many times
  the final n-gram repeats back to back at the end; take the n with the most repeats (ties: the
  smallest n); the text repeats iff that count > 1 and (n >= 3 or count > 50).
- repetition_paper (the Table 1 caption): a phrase of >= 2 tokens repeated >= 3 times at the end.
"""

_KWARGS_DESCRIPTION = """
Args:
""" + TOKEN_INPUTS + """\
    max_n (int): longest n-gram the code rule looks at (default 90).
Returns:
    repetition, repetition_paper (fractions in [0, 1]; the paper prints percentages).
Examples:
    >>> import evaluate
    >>> from evalharness import evaluate_modules
    >>> repetition = evaluate.load(evaluate_modules.path("repetition"))
    >>> repetition.compute(predictions=[[1, 2, 3, 4, 5, 6], [9, 1, 2, 3, 1, 2, 3, 1, 2, 3]])
    {'repetition': 0.5, 'repetition_paper': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Repetition(evaluate.Metric):
    def _info(self):
        return token_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                                 ["https://arxiv.org/abs/1904.09751"])

    def _compute(self, predictions, max_n=90, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.repetition import Repetition as Scorer

        return score_tokens(Scorer(max_n=max_n), predictions, tokenizer, eos_token_id, resamples, seed)
