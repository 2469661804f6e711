"""Distinct-n, rep-n and diversity as a Hugging Face evaluate module: exactly evalharness's
`distinct` scorer."""

import evaluate

from evalharness.evaluate_modules import TOKEN_INPUTS, score_tokens, token_metric_info

_CITATION = """\
@inproceedings{li2016diversity,
  title={A Diversity-Promoting Objective Function for Neural Conversation Models},
  author={Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
  booktitle={NAACL},
  year={2016}
}
@inproceedings{su2022contrastive,
  title={A Contrastive Framework for Neural Text Generation},
  author={Su, Yixuan and Lan, Tian and Wang, Yan and Yogatama, Dani and Kong, Lingpeng and Collier, Nigel},
  booktitle={NeurIPS},
  year={2022}
}
"""

_DESCRIPTION = """\
Lexical diversity of a set of texts, on tokens:
- distinct_n (n = 1..4; Li et al. 2016): distinct n-grams over the whole set / all n-grams
  (n-grams never cross text boundaries).
- rep_n (n = 2..4; Su et al. 2022, SimCTG): 100 * (1 - sum over texts of distinct n-grams within
  the text / sum over texts of n-grams in the text), in percent.
- diversity (SimCTG): prod over n = 2..4 of (1 - rep_n / 100).
"""

_KWARGS_DESCRIPTION = """
Args:
""" + TOKEN_INPUTS + """\
Returns:
    distinct_1..distinct_4 and diversity (in [0, 1]), rep_2..rep_4 (percent, in [0, 100]);
    a metric with no n-grams is left out.
Examples:
    >>> import evaluate
    >>> from evalharness import evaluate_modules
    >>> distinct = evaluate.load(evaluate_modules.path("distinct"))
    >>> distinct.compute(predictions=[[1, 2, 1, 2], [1, 2, 3]])["distinct_2"]
    0.6
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Distinct(evaluate.Metric):
    def _info(self):
        return token_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                                 ["https://arxiv.org/abs/1510.03055", "https://arxiv.org/abs/2202.06417"])

    def _compute(self, predictions, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.distinct import Distinct as Scorer

        return score_tokens(Scorer(), predictions, tokenizer, eos_token_id, resamples, seed)
