"""Detectability (can a classifier tell generated from human text?) as a Hugging Face evaluate
module: exactly evalharness's `detectability` scorer."""

import evaluate

from evalharness.evaluate_modules import HOLTZMAN_2020, WordTokenizer, as_generations, encode_all, scorer_output

_CITATION = """\
@misc{openai2019gpt2output,
  title={GPT-2 Output Dataset (detection baseline)},
  author={{OpenAI}},
  howpublished={\\url{https://github.com/openai/gpt-2-output-dataset}},
  year={2019}
}
@inproceedings{gehrmann2019gltr,
  title={GLTR: Statistical Detection and Visualization of Generated Text},
  author={Gehrmann, Sebastian and Strobelt, Hendrik and Rush, Alexander M.},
  booktitle={ACL: System Demonstrations},
  year={2019}
}
""" + HOLTZMAN_2020

_DESCRIPTION = """\
Detectability: how well a classifier tells generated texts (predictions) from the human texts
they continue (references, aligned: the i-th of each continue the same prompt). Both texts of a
pair are cut to the same number of tokens; grouped 5-fold cross-validation (a pair never split
between training and test); logistic regression with C chosen by an inner grouped
cross-validation; ROC AUC and accuracy of the out-of-fold scores, per feature set:
tfidf (word 1-2-gram TF-IDF, OpenAI's GPT-2 output-dataset baseline), gltr (token-rank
histogram and mean log-probability under a language model, Gehrmann et al. 2019), minilm
(all-MiniLM-L6-v2 sentence embedding), finetune (MiniLM fine-tuned as the classifier).
0.5 = indistinguishable, 1 = always told apart.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of human texts, the i-th continuing the same prompt as predictions[i].
    features (list): any of "tfidf", "gltr", "minilm", "finetune"; default tfidf and minilm, plus
        gltr when `model` is given.
    model (str or None): an evalharness model reference (builtin:pydocs-gpt2-small, a local
        folder or a Hub id): its tokenizer cuts the pairs to equal token counts, its
        probabilities give the gltr features. Without it, pairs are cut to equal numbers of
        whitespace words.
    contexts (list of str or None): the prompts, to condition the gltr ranks on (otherwise
        each text is scored after an end-of-text token, as GLTR does).
    folds, inner_folds, seed, max_tokens, min_df, batch_size, finetune_epochs,
    finetune_learning_rate: as the scorer's options.
    device (str): torch device for the networks (default "cpu").
    resamples (int): bootstrap resamples over pairs for the 95% intervals (default 200; 0: none).
Returns:
    detectability_auc_<feature>, detectability_acc_<feature> (in [0, 1]) and, with resamples,
    <metric>_low / <metric>_high.
Examples:
    >>> import evaluate
    >>> from evalharness import evaluate_modules
    >>> detectability = evaluate.load(evaluate_modules.path("detectability"))
    >>> human = ["the cat sat on the mat today", "a dog ran in the park at noon"] * 10
    >>> result = detectability.compute(predictions=human, references=human, features=["tfidf"])
    >>> result["detectability_auc_tfidf"]
    0.5
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Detectability(evaluate.Metric):
    def _info(self):
        import datasets

        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/openai/gpt-2-output-dataset/blob/master/detection.md",
                            "https://arxiv.org/abs/1906.04043"],
        )

    def _compute(self, predictions, references, features=None, model=None, contexts=None, device="cpu",
                 resamples=200, seed=0, **options):
        from evalharness.scorers.featurize import get_featurizer
        from evalharness.scorers.detectability import Detectability as Scorer

        loaded = get_featurizer("model", model_name=model, device=device) if model else None
        tokenizer = loaded.tokenizer if loaded else WordTokenizer()
        default = ("tfidf", "gltr", "minilm") if loaded else ("tfidf", "minilm")
        scorer = Scorer(features=tuple(features or default), seed=seed, **options)
        human = as_generations(encode_all(references, tokenizer), references, run="human")
        run = as_generations(encode_all(predictions, tokenizer), predictions)
        if not scorer.enough_prompts(len(run)):
            raise ValueError(f"detectability needs more pairs for {scorer.folds}-fold cross-validation")
        context_ids = encode_all(contexts, tokenizer) if contexts else ()
        network = loaded.model if loaded else None

        def score(generations, ctx):
            return scorer.score_with(ctx.human, generations, tokenizer, network, ctx)

        return scorer_output(score, run, resamples, seed, human=human, contexts=context_ids, device=device)
