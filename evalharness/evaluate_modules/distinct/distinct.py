"""Distinct-n, rep-n and diversity as a Hugging Face evaluate module: exactly evalharness's
`distinct` scorer."""

import evaluate

from evalharness.evaluate_modules import as_generations, encode_all, scorer_output, token_features

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
    predictions: list of token-id lists (exact), or list of texts (encoded with `tokenizer`, or
        split into whitespace words without one).
    tokenizer: an object with encode(text), e.g. a transformers tokenizer, for text inputs.
    eos_token_id (int or None): a trailing end-of-text id is dropped, as the harness does.
    resamples (int): with > 0, also `<metric>_low`/`<metric>_high`: a 95% bootstrap interval.
    seed (int): bootstrap seed (default 0).
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
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=token_features(),
            reference_urls=["https://arxiv.org/abs/1510.03055", "https://arxiv.org/abs/2202.06417"],
        )

    def _compute(self, predictions, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.distinct import Distinct as Scorer

        generations = as_generations(encode_all(predictions, tokenizer), eos_token_id=eos_token_id)
        return scorer_output(Scorer().score, generations, resamples, seed)
