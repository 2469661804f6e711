"""The Zipf coefficient as a Hugging Face evaluate module: exactly evalharness's `zipf` scorer."""

import evaluate

from evalharness.evaluate_modules import as_generations, encode_all, scorer_output, token_features

_CITATION = """\
@inproceedings{holtzman2020curious,
  title={The Curious Case of Neural Text Degeneration},
  author={Holtzman, Ari and Buys, Jan and Du, Li and Forbes, Maxwell and Choi, Yejin},
  booktitle={ICLR},
  year={2020}
}
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
    predictions: list of token-id lists (exact), or list of texts (encoded with `tokenizer`, or
        split into whitespace words without one).
    top_ranks (int): ranks used in the fit (default 5000).
    tokenizer: an object with encode(text), e.g. a transformers tokenizer, for text inputs.
    eos_token_id (int or None): a trailing end-of-text id is dropped, as the harness does.
    resamples (int): with > 0, also `<metric>_low`/`<metric>_high`: a 95% bootstrap interval
        (recomputed per resample, shifted onto the point value; see the metric card).
    seed (int): bootstrap seed (default 0).
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
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=token_features(), reference_urls=["https://arxiv.org/abs/1904.09751"],
        )

    def _compute(self, predictions, top_ranks=5000, tokenizer=None, eos_token_id=None, resamples=0, seed=0):
        from evalharness.scorers.zipf import Zipf as Scorer

        generations = as_generations(encode_all(predictions, tokenizer), eos_token_id=eos_token_id)
        return scorer_output(Scorer(top_ranks=top_ranks).score, generations, resamples, seed)
