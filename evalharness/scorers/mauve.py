"""MAUVE (Pillutla et al. 2021) between the human continuations and a run, via mauve-text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, Generation, ScoreResult
from evalharness.scorers.base import HIGHER, LOWER, SCORERS, Scorer, ScoringContext, centred_bootstrap_ci

DISCRETIZATION = 25
"""Points on the divergence curve (compute_mauve's divergence_curve_discretization_size)."""


def auto_buckets(num_p: int, num_q: int) -> int:
    """compute_mauve's num_buckets='auto': one cluster per ten texts of the smaller side."""
    return max(2, int(round(min(num_p, num_q) / 10)))


def quantize(p_features: np.ndarray, q_features: np.ndarray, num_buckets: int, seed: int,
             explained_variance: float = 0.9, num_redo: int = 5, max_iter: int = 500
             ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels of p and q exactly as mauve.compute_mauve.cluster_feats computes them
    (L2-normalise the stacked [q; p], PCA keeping `explained_variance`, faiss k-means with the
    same seeds), returned as labels rather than histograms so resamples can re-histogram them."""
    import faiss
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    data = normalize(np.vstack([q_features, p_features]), norm="l2", axis=1)
    pca = PCA(n_components=None, whiten=False, random_state=seed + 1).fit(data)
    keep = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= explained_variance))
    data = pca.transform(data)[:, : keep + 1].astype(np.float32)
    # min_points_per_centroid only sets when faiss prints "please provide at least N training
    # points" (n < k * 39, always so at MAUVE's n/10 buckets): it changes no label (tested)
    kmeans = faiss.Kmeans(data.shape[1], num_buckets, niter=max_iter, verbose=False,
                          nredo=num_redo, update_index=True, seed=seed + 2, min_points_per_centroid=1)
    # one OpenMP thread: at MAUVE's sizes (n texts, n/10 centroids) threads gain little, and on
    # a busy machine their spin-waits made one quantisation of 1,000 texts take 15-35 s instead
    # of 0.7 s (measured side by side, 2 cores under load). Labels are the same either way:
    # faiss assigns each point alone and each thread sums its own centroids (the compute_mauve
    # comparisons in tests/scorers/test_mauve.py run it with its default threads).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        kmeans.train(data)
        _, labels = kmeans.index.search(data, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    labels = labels.reshape(-1)
    return labels[len(q_features):], labels[: len(q_features)]


WEIGHTS = np.sort(np.linspace(1e-6, 1 - 1e-6, DISCRETIZATION))
"""The mixture weights l of compute_mauve, in the order its divergence curve visits them."""
_W, _1_MINUS_W = WEIGHTS[:, None], 1 - WEIGHTS[:, None]


def mauve_from_labels(p_labels: np.ndarray, q_labels: np.ndarray, num_buckets: int,
                      scaling: float = 5.0) -> dict[str, float]:
    """MAUVE and frontier integral from cluster labels: bit for bit what compute_mauve gets from
    mauve-text's get_divergence_curve_for_multinomials, get_fronter_integral and sklearn's auc
    (tests/scorers/test_mauve.py compares them), without their Python loops, as this runs once
    per bootstrap resample."""
    from mauve.compute_mauve import get_fronter_integral

    p = np.bincount(p_labels, minlength=num_buckets)
    q = np.bincount(q_labels, minlength=num_buckets)
    p, q = p / p.sum(), q / q.sum()
    curve = np.empty((DISCRETIZATION + 2, 2))
    curve[0], curve[-1] = (0, np.inf), (np.inf, 0)  # the curve's extreme points
    curve[1:-1, 0], curve[1:-1, 1] = _kl_to_mixtures(q, p, q), _kl_to_mixtures(p, p, q)
    x, y = np.exp(-scaling * curve).T
    i, j = np.argsort(x), np.argsort(y)
    mauve = 0.5 * (_trapezoid(x[i], y[i]) + _trapezoid(y[j], x[j]))
    # mauve-text's own loop, over Python floats: the same IEEE double operations as over the
    # array's np.float64 scalars, at a fraction of their cost
    frontier = get_fronter_integral(p.tolist(), q.tolist())
    return {"mauve": float(mauve), "frontier_integral": float(frontier)}


def _kl_to_mixtures(a: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """mauve-text's kl_multinomial(a, R) for R = l P + (1 - l) Q at each l of WEIGHTS. As
    1e-6 <= l <= 1 - 1e-6, R > 0 wherever P or Q is: KL is never inf, and kl_multinomial keeps
    the buckets where a != 0, the same for every l. Row k holds the terms of l_k in
    kl_multinomial's order, and as the array is C-contiguous, sum(axis=1) adds each row with
    np.sum's 1-D pairwise summation (an F-ordered one, as r[:, keep] would give, is added
    column by column: other bits)."""
    keep = a != 0
    r = _W * p[keep] + _1_MINUS_W * q[keep]  # elementwise as mauve-text's w * p + (1 - w) * q
    a = a[keep]
    return (a * np.log(a / r)).sum(axis=1)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """sklearn.metrics.auc(x, y) for increasing x (x here is sorted), less its input checks:
    scipy's trapezoid with the same operations in the same order."""
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0).sum())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@SCORERS.register("mauve")
@dataclass(frozen=True)
class Mauve(Scorer):
    """MAUVE (Pillutla et al. 2021, "MAUVE: Measuring the Gap Between Neural Text and Human
    Text using Divergence Frontiers"), computed as mauve-text's
    `compute_mauve(p_features=human, q_features=run, num_buckets='auto', mauve_scaling_factor=5,
    seed=seed)`: both feature sets L2-normalised, PCA to 90% explained variance, k-means into
    num_buckets clusters ('auto' = round(n / 10)), P and Q = cluster histograms; with
    R_l = l P + (1 - l) Q over 25 values of l, the divergence curve is
    (exp(-c KL(Q || R_l)), exp(-c KL(P || R_l))), c = `scaling`; `mauve` = area under it
    (higher = closer to human); `frontier_integral` = mauve-text's frontier integral (lower =
    closer). Features come from `featurizer` (see evalharness.scorers.featurize: "minilm" default,
    "model", or a Hugging Face id/path), texts truncated to `max_tokens`, featurised in batches
    of `batch_size`; the human features are computed once per experiment and cached under
    ctx.cache_dir/features/.

    Small samples bias MAUVE upward (few clusters, coarse histograms): compare runs only at
    equal sample sizes. Not computed for the human run itself (human against human is
    meaningless).

    Seeds: the quantisation depends on the k-means seed (mauve-text issue #11), by as much as
    the gaps between good samplers. Measured on the default experiment (500 prompts, MiniLM
    features, seeds 25-34), MAUVE's sd across seeds is 0.025-0.053 for the sampling runs (pure
    0.036, temperature 0.9 0.029, top-k 640 0.042, top-p 0.95 0.053; greedy and beam, at
    MAUVE 0.01, 0.001), and larger on fewer prompts (mean over the six best samplers: 0.042 at
    500 prompts, 0.050 at 250, 0.062 at 125; README, "MAUVE over k-means seeds"). So the scorer
    quantises with the seeds `seed`, `seed` + 1, ..., `seed` + `seeds` - 1 (default 25..29);
    `mauve` and `frontier_integral` are the means over them and `mauve_seed_sd` MAUVE's
    standard deviation across them (ddof 1; not emitted for `seeds: 1`, which gives the
    single-seed values and interval of earlier versions bit for bit).

    Interval (score_label_sets): a two-way bootstrap of the mean over seeds. Each resample
    draws the prompts from the stream every run shares and `seeds` quantisations with
    replacement, re-histograms each drawn quantisation's fixed cluster labels of the drawn
    prompts (human and run alike) and takes the mean of their MAUVE. Resampling both sources of
    randomness of the reported estimator puts the seed variance into the interval in the
    proportion it enters the estimate (about sd^2 / seeds), where one seed per resample would
    charge the mean with a single seed's full variance. Resampling prompts adds multinomial
    noise to both histograms, which can only add divergence: every resample is pulled below
    the estimate (near MAUVE = 1 the whole bootstrap distribution lies below it). So the
    percentile interval is shifted to put the resamples' median on the point value (and
    clipped to [0, 1]); its width is the bootstrap spread. The resamples' values (shifted alike)
    are kept for paired comparisons between runs (report.paired).
    """

    featurizer: str = "minilm"
    batch_size: int = 32
    max_tokens: int = 1024
    num_buckets: int | str = "auto"
    scaling: float = 5.0
    seed: int = 25
    seeds: int = 5
    kmeans_num_redo: int = 5
    kmeans_max_iter: int = 500

    metrics = {"mauve": HIGHER, "frontier_integral": LOWER, "mauve_seed_sd": LOWER}
    without_interval = frozenset({"mauve_seed_sd"})
    needs_human = True

    def __post_init__(self) -> None:
        if not isinstance(self.featurizer, str) or not self.featurizer:
            raise UserError(f"featurizer: must be 'minilm', 'model' or a Hugging Face model id/path (got {self.featurizer!r})")
        for key, low in (("batch_size", 1), ("max_tokens", 1), ("seeds", 1), ("kmeans_num_redo", 1),
                         ("kmeans_max_iter", 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < low:
                raise UserError(f"{key}: must be an integer >= {low} (got {value!r})")
        if self.num_buckets != "auto" and (not _is_int(self.num_buckets) or self.num_buckets < 2):
            raise UserError(f"num_buckets: must be 'auto' or an integer >= 2 (got {self.num_buckets!r})")
        if isinstance(self.scaling, bool) or not isinstance(self.scaling, (int, float)) or not self.scaling > 0:
            raise UserError(f"scaling: must be a number > 0 (got {self.scaling!r})")
        if not _is_int(self.seed):
            raise UserError(f"seed: must be an integer (got {self.seed!r})")

    def preflight(self) -> None:
        """Called before generation: a featuriser that cannot be loaded should fail now, not after hours."""
        from evalharness.scorers.featurize import LOADERS, check_hf_featurizer

        if self.featurizer not in ("minilm", "model") and self.featurizer not in LOADERS:
            check_hf_featurizer(self.featurizer)

    def load_featurizer(self, model_name: str, device: str):
        """The featuriser of these options (loaded once per process). Scorers that have this
        method get their features computed by all ranks under torchrun (evalharness.experiment.scoring)."""
        from evalharness.scorers.featurize import get_featurizer

        return get_featurizer(self.featurizer, model_name=model_name, device=device,
                              max_tokens=self.max_tokens, batch_size=self.batch_size)

    def features(self, generations: Sequence[Generation], ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray]:
        """(human features, run features), each from the cache under ctx.cache_dir when present."""
        from evalharness.scorers.featurize import cached_features

        featurizer = self.load_featurizer(ctx.model_name, ctx.device)
        human = cached_features(featurizer, [g.text for g in ctx.human], ctx.cache_dir, HUMAN_RUN)
        return human, cached_features(featurizer, [g.text for g in generations], ctx.cache_dir, generations[0].run)

    def score(self, generations: Sequence[Generation], ctx: ScoringContext) -> ScoreResult:
        if len(generations) < 2 or any(g.run == HUMAN_RUN for g in generations):
            return ScoreResult(values={})
        if len(ctx.human) != len(generations):
            raise ValueError(f"mauve: {len(ctx.human)} human texts for {len(generations)} generations")
        p_features, q_features = self.features(generations, ctx)
        return self.score_features(p_features, q_features, ctx.resamples, ctx.seed)

    def score_features(self, p_features: np.ndarray, q_features: np.ndarray,
                       resamples: int = 0, seed: int = 0) -> ScoreResult:
        """MAUVE of prompt-aligned features (row i of both = prompt i) over the k-means seeds
        seed, seed + 1, ..., seed + seeds - 1, with its interval (score_label_sets)."""
        buckets = auto_buckets(len(p_features), len(q_features)) if self.num_buckets == "auto" else self.num_buckets
        label_sets = [quantize(p_features, q_features, buckets, self.seed + offset,
                               num_redo=self.kmeans_num_redo, max_iter=self.kmeans_max_iter)
                      for offset in range(self.seeds)]
        return score_label_sets(label_sets, buckets, self.scaling, resamples, seed)


SEED_DRAWS = 0x5EED
"""Second key of the generator that draws each resample's quantisations: its own stream, so the
prompt-index stream every run shares (scorers.base.bootstrap_draws) is left as it is."""


def score_label_sets(label_sets: Sequence[tuple[np.ndarray, np.ndarray]], buckets: int, scaling: float,
                     resamples: int, seed: int) -> ScoreResult:
    """MAUVE and frontier integral as the mean over quantisations (one (p labels, q labels) pair
    per k-means seed), the seeds' standard deviation of MAUVE (`mauve_seed_sd`, ddof 1, from
    two seeds on), and a two-way bootstrap interval: resample b draws the prompts from the shared
    stream and len(label_sets) quantisations with replacement, and its value is the mean over the
    drawn quantisations of the statistic on the drawn prompts; then centred (centred_bootstrap_ci).
    One quantisation: exactly the single-seed value and interval."""
    per_seed = [mauve_from_labels(p, q, buckets, scaling) for p, q in label_sets]
    values = {m: float(np.mean([v[m] for v in per_seed])) for m in ("mauve", "frontier_integral")}
    if len(label_sets) > 1:
        values["mauve_seed_sd"] = float(np.std([v["mauve"] for v in per_seed], ddof=1))
    picker = np.random.default_rng([seed, SEED_DRAWS])

    def statistic(idx: np.ndarray) -> dict[str, float]:
        counts = np.bincount(picker.integers(0, len(label_sets), len(label_sets)), minlength=len(label_sets)) \
            if len(label_sets) > 1 else np.ones(1, dtype=int)
        drawn = [(count, mauve_from_labels(p[idx], q[idx], buckets, scaling))
                 for count, (p, q) in zip(counts, label_sets) if count]
        if len(drawn) == 1:
            return drawn[0][1]
        return {m: float(sum(count * v[m] for count, v in drawn) / len(label_sets)) for m in drawn[0][1]}

    bounds = {"mauve": (0.0, 1.0), "frontier_integral": (0.0, 1.0)}
    ci = centred_bootstrap_ci(statistic, len(label_sets[0][1]), resamples, seed, values, bounds)
    return ScoreResult(values=values, ci=ci)
