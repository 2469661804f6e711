"""The Zipf coefficient as a Hugging Face evaluate module: exactly evalharness's `zipf` scorer."""

import evaluate

from evalharness.evaluate_modules import HOLTZMAN_2020, TOKEN_INPUTS, score_tokens, token_metric_info

_CITATION = HOLTZMAN_2020 + """\
@book{zipf1949human,
  title={Human Behavior and the Principle of Least Effort},
  author={Zipf, George Kingsley},
  publisher={Addison-Wesley},
  year={1949}
}
"""

_DESCRIPTION = """\
The Zipf coefficient of a set of texts (Holtzman et al. 2019, Table 1 and Figure 6): count every
token over all texts, sort the counts in decreasing order, fit
scipy.stats.linregress(log rank, log count) over the `top_ranks` most frequent tokens (default
5,000) and report -slope (about 1 for natural language) and -r (1 for a perfect power law).
"""

_KWARGS_DESCRIPTION = """
Args:
""" + TOKEN_INPUTS + """\
    top_ranks (int): ranks used in the fit (default 5000).
    (zipf's interval recomputes the fit per resample and is shifted onto the point value.)
Returns:
    zipf (float, -slope; > 0 for any real text), zipf_r (float in [-1, 1]).
Examples:
    >>> import evaluate
    >>> from evalharness import evaluate_modules
    >>> zipf = evaluate.load(evaluate_modules.path("zipf"))
    >>> zipf.compute(predictions=[[1, 1, 1, 1, 2, 2, 3], [1, 1, 2, 4]])
    {'zipf': 1.4157246267031944, 'zipf_r': 0.965984023126776}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Zipf(evaluate.Metric):
    def _info(self):
        return token_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                                 ["https://arxiv.org/abs/1904.09751"])

    def _compute(self, predictions, top_ranks=5000, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.zipf import Zipf as Scorer

        return score_tokens(Scorer(top_ranks=top_ranks), predictions, tokenizer, eos_token_id, resamples, seed)
