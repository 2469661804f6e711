"""Repetition at the end of a text (both rules of Holtzman et al. 2019) as a Hugging Face
evaluate module: exactly evalharness's `repetition` scorer."""

import evaluate

from evalharness.evaluate_modules import as_generations, encode_all, scorer_output, token_features

_CITATION = """\
@inproceedings{holtzman2020curious,
  title={The Curious Case of Neural Text Degeneration},
  author={Holtzman, Ari and Buys, Jan and Du, Li and Forbes, Maxwell and Choi, Yejin},
  booktitle={ICLR},
  year={2020}
}
"""

_DESCRIPTION = """\
The share of texts that end in a repetition loop, by two rules of Holtzman et al. (2019):
- repetition (the authors' code, metrics/repetition.py): for n = 1..max_n count how many times
  the final n-gram repeats back to back at the end; take the n with the most repeats (ties: the
  smallest n); the text repeats iff that count > 1 and (n >= 3 or count > 50).
- repetition_paper (the Table 1 caption): a phrase of >= 2 tokens repeated >= 3 times at the end.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of token-id lists (exact), or list of texts (encoded with `tokenizer`, or
        split into whitespace words without one).
    max_n (int): longest n-gram the code rule looks at (default 90).
    tokenizer: an object with encode(text), e.g. a transformers tokenizer, for text inputs.
    eos_token_id (int or None): a trailing end-of-text id is dropped, as the harness does.
    resamples (int): with > 0, also `<metric>_low`/`<metric>_high`: a 95% bootstrap interval.
    seed (int): bootstrap seed (default 0).
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
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=token_features(), reference_urls=["https://arxiv.org/abs/1904.09751"],
        )

    def _compute(self, predictions, max_n=90, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.repetition import Repetition as Scorer

        generations = as_generations(encode_all(predictions, tokenizer), eos_token_id=eos_token_id)
        return scorer_output(Scorer(max_n=max_n).score, generations, resamples, seed)
