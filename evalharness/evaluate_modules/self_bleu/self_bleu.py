"""Self-BLEU as a Hugging Face evaluate module: exactly evalharness's `self_bleu` scorer."""

import evaluate

from evalharness.evaluate_modules import HOLTZMAN_2020, TOKEN_INPUTS, score_tokens, token_metric_info

_CITATION = """\
@inproceedings{zhu2018texygen,
  title={Texygen: A Benchmarking Platform for Text Generation Models},
  author={Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan and Wang, Jun and Yu, Yong},
  booktitle={SIGIR},
  year={2018}
}
""" + HOLTZMAN_2020

_DESCRIPTION = """\
Self-BLEU (Zhu et al. 2018) measures how similar a set of generations is to itself: each text is a
hypothesis scored with BLEU against all *other* texts of the set as references, and Self-BLEU is
the mean. Higher = less diverse. BLEU is exactly NLTK's sentence_bleu with uniform weights
(1/n,)*n and SmoothingFunction().method1, on token ids, as Holtzman et al. (2019, Table 1) used it.
"""

_KWARGS_DESCRIPTION = """
Args:
""" + TOKEN_INPUTS + """\
    n (int): BLEU order of `self_bleu` (default 4).
    orders (list of int): further orders, each returned as `self_bleu_<k>`.
    max_hypotheses (int or None): score only that many hypotheses, drawn with
        random.Random(seed).sample (the paper's 1,000-sample protocol); references stay all texts.
Returns:
    self_bleu (float in [0, 1]), and self_bleu_<k> for each extra order.
Examples:
    >>> import evaluate
    >>> from evalharness import evaluate_modules
    >>> self_bleu = evaluate.load(evaluate_modules.path("self_bleu"))
    >>> self_bleu.compute(predictions=[[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]], n=2)
    {'self_bleu': 0.7745966692414834}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelfBleu(evaluate.Metric):
    def _info(self):
        return token_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                                 ["https://arxiv.org/abs/1802.01886", "https://arxiv.org/abs/1904.09751"])

    def _compute(self, predictions, n=4, orders=(), max_hypotheses=None, seed=0, tokenizer=None,
                 eos_token_id=None, resamples=0):
        from evalharness.scorers.self_bleu import SelfBleu as Scorer

        scorer = Scorer(n=n, orders=tuple(orders), max_hypotheses=max_hypotheses, seed=seed)
        return score_tokens(scorer, predictions, tokenizer, eos_token_id, resamples, seed)
