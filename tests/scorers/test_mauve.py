"""MAUVE against mauve-text's compute_mauve on the same features; featurisers and their cache."""

import zlib

import numpy as np
import pytest
from mauve import compute_mauve

from evalharness.scorers import featurize
from evalharness.errors import UserError
from evalharness.scorers.base import centred_bootstrap_ci
from evalharness.scorers.mauve import Mauve, auto_buckets, mauve_from_labels, quantize, score_label_sets
from scorer_helpers import check_intervals, ctx, gen


def features(n, dim=24, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


@pytest.mark.parametrize("shift, buckets", [(0.0, "auto"), (0.4, "auto"), (1.0, 7)])
def test_full_sample_value_equals_compute_mauve(shift, buckets):
    p, q = features(120, seed=1), features(120, shift=shift, seed=2)
    ours = Mauve(num_buckets=buckets, seed=25, seeds=1).score_features(p, q).values
    ref = compute_mauve(p_features=p, q_features=q, num_buckets=buckets, mauve_scaling_factor=5, seed=25)
    assert ours["mauve"] == pytest.approx(ref.mauve, abs=1e-12)
    assert ours["frontier_integral"] == pytest.approx(ref.frontier_integral, abs=1e-12)


def test_identical_runs_give_mauve_one():
    p = features(100, seed=3)
    values = Mauve().score_features(p, p.copy()).values
    assert values["mauve"] == pytest.approx(1.0, abs=1e-6)
    assert values["frontier_integral"] == pytest.approx(0.0, abs=1e-9)
    assert auto_buckets(100, 100) == 10 and auto_buckets(5, 100) == 2


def test_intervals_from_fixed_quantisation_are_reproducible():
    p, q = features(150, seed=4), features(150, shift=0.2, seed=5)
    first = Mauve().score_features(p, q, resamples=100, seed=1)
    again = Mauve().score_features(p, q, resamples=100, seed=1)
    assert first.ci == again.ci and set(first.ci) == {"mauve", "frontier_integral"}
    for metric, value in first.values.items():
        if metric == "mauve_seed_sd":  # a spread: no interval
            continue
        low, high = first.ci[metric]
        assert low <= value <= high


def test_seeds_average_compute_mauve_over_consecutive_seeds():
    """seeds=3, seed=7: the mean of compute_mauve at seeds 7, 8, 9, and MAUVE's sd over them."""
    p, q = features(130, seed=11), features(130, shift=0.3, seed=12)
    ours = Mauve(seed=7, seeds=3).score_features(p, q).values
    refs = [compute_mauve(p_features=p, q_features=q, mauve_scaling_factor=5, seed=s) for s in (7, 8, 9)]
    assert ours["mauve"] == pytest.approx(np.mean([r.mauve for r in refs]), abs=1e-12)
    assert ours["frontier_integral"] == pytest.approx(np.mean([r.frontier_integral for r in refs]), abs=1e-12)
    assert ours["mauve_seed_sd"] == pytest.approx(np.std([r.mauve for r in refs], ddof=1), abs=1e-12)
    assert ours["mauve_seed_sd"] > 0  # these features do move with the seed


def test_one_seed_reproduces_the_single_quantisation_value_and_interval_bit_for_bit():
    """seeds: 1 is the scorer as it was: one quantisation at `seed`, its labels re-histogrammed on
    each resample, the interval centred (a transcription of that code)."""
    p, q = features(150, seed=4), features(150, shift=0.2, seed=5)
    buckets = auto_buckets(150, 150)
    p_labels, q_labels = quantize(p, q, buckets, 25)

    def statistic(idx):
        return mauve_from_labels(p_labels[idx], q_labels[idx], buckets, 5.0)

    values = statistic(np.arange(150))
    ci = centred_bootstrap_ci(statistic, 150, 100, 3, values, {"mauve": (0.0, 1.0), "frontier_integral": (0.0, 1.0)})
    ours = Mauve(seeds=1).score_features(p, q, resamples=100, seed=3)
    assert ours.values == values and ours.ci == ci  # ==: not a bit moved, no mauve_seed_sd


def spread_label_sets(spread, k=20, n=400, sets=5):
    """Label sets as k-means seeds could give them: the human side fixed, the run's labels the
    human ones with a share 0.15 + spread * (s - 2) of points moved into bucket 0 in set s.
    spread 0: five identical quantisations; larger spread: MAUVE varies more across them."""
    rng = np.random.default_rng(0)
    p, u = rng.integers(0, k, n), rng.random(n)
    return [(p, np.where(u < 0.15 + spread * (s - 2), 0, p)) for s in range(sets)]


def test_interval_grows_with_the_seed_variance():
    results = [score_label_sets(spread_label_sets(spread), 20, 5.0, 300, 0) for spread in (0.0, 0.02, 0.04, 0.06)]
    sds = [r.values["mauve_seed_sd"] for r in results]
    widths = [r.ci["mauve"][1] - r.ci["mauve"][0] for r in results]
    assert sds[0] < 1e-12 and sds == sorted(sds) and sds[-1] > 0.04
    assert widths == sorted(widths) and widths[-1] > 2 * widths[0], widths
    for r in results:  # each interval holds its point value; draws kept for paired comparisons
        assert r.ci["mauve"][0] <= r.values["mauve"] <= r.ci["mauve"][1]
        assert len(r.draws["mauve"]) == 300


def test_seed_draws_leave_the_shared_prompt_stream_alone():
    """The resampled prompts are those of every other scorer: with identical quantisations,
    five seeds give the single-seed draws exactly (the seed draws change nothing then)."""
    one = score_label_sets(spread_label_sets(0.0)[:1], 20, 5.0, 50, 4)
    five = score_label_sets(spread_label_sets(0.0), 20, 5.0, 50, 4)
    assert five.draws["mauve"] == pytest.approx(one.draws["mauve"], abs=1e-12)


def mauve_from_labels_reference(p_labels, q_labels, num_buckets, scaling=5.0):
    """mauve_from_labels as compute_mauve composes it: mauve-text's divergence curve and frontier
    integral, sklearn's auc."""
    from mauve.compute_mauve import get_divergence_curve_for_multinomials, get_fronter_integral
    from sklearn.metrics import auc

    p = np.bincount(p_labels, minlength=num_buckets)
    q = np.bincount(q_labels, minlength=num_buckets)
    p, q = p / p.sum(), q / q.sum()
    x, y = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, 25), scaling).T
    i, j = np.argsort(x), np.argsort(y)
    mauve = 0.5 * (auc(x[i], y[i]) + auc(y[j], x[j]))
    return {"mauve": float(mauve), "frontier_integral": float(get_fronter_integral(p, q))}


def label_sets(k, rng):
    """Labels in [0, k) of every shape a resample can give: uniform, skewed (buckets empty on
    one side or both), disjoint supports, identical or permuted sides, unused top buckets,
    tiny and unequal sizes."""
    for n in (1, 2, 5, 40, 500):
        yield rng.integers(0, k, n), rng.integers(0, k, n)
        yield rng.integers(0, k, n), rng.integers(0, k, int(rng.integers(1, 800)))
    for _ in range(25):
        a, b = rng.dirichlet(np.full(k, 0.3)), rng.dirichlet(np.full(k, 0.3))
        yield rng.choice(k, 500, p=a), rng.choice(k, int(rng.integers(100, 600)), p=b)
    for _ in range(10):
        p = rng.integers(0, k, 500)
        yield p, p.copy()
        yield p, rng.permutation(p)
        yield p, np.where(rng.random(500) < 0.02, rng.integers(0, k, 500), p)  # nearly identical
    for _ in range(10):
        cut = int(rng.integers(1, k))
        yield rng.integers(0, cut, 500), rng.integers(cut, k, 500)  # disjoint
        yield rng.integers(0, cut, 500), rng.integers(cut - 1, k, 300)  # one shared bucket
        top = max(1, k // 2)
        yield rng.integers(0, top, 500), rng.integers(0, top, 500)  # buckets >= top empty on both


@pytest.mark.parametrize("k", [2, 3, 10, 50])
def test_mauve_from_labels_is_bit_identical_to_mauve_text(k):
    """Exact equality (==, not approx) with the reference composition over 95 label sets (285 cases) per
    bucket count: the bootstrap intervals must not move by a single bit."""
    rng = np.random.default_rng(k)
    cases = 0
    for p_labels, q_labels in label_sets(k, rng):
        for scaling in (5.0, 5, 1.7):
            assert mauve_from_labels(p_labels, q_labels, k, scaling) == \
                mauve_from_labels_reference(p_labels, q_labels, k, scaling), (k, cases)
            cases += 1
    assert cases == 3 * 95


class FakeFeaturizer:
    """Deterministic per-text features; texts starting with "x" are shifted (a 'worse' run)."""

    key = "fake-test"

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) + (0.8 if t.startswith("x") else 0.0)
                for t in texts]
        return np.stack(rows).astype(np.float32)


@pytest.fixture
def fake(monkeypatch):
    instance = FakeFeaturizer()
    monkeypatch.setitem(featurize.LOADERS, "fake", lambda **_: instance)
    monkeypatch.setattr(featurize, "_LOADED", {})
    monkeypatch.setattr(featurize, "_MEMORY", {})
    return instance


def records(prefix, n, run):
    return [gen([1, 2], run=run, prompt_id=str(i), text=f"{prefix}{i}") for i in range(n)]


def test_human_features_are_computed_once_and_cached_on_disk(fake, tmp_path):
    human = records("h", 60, "human")
    context = ctx(human=human, cache_dir=tmp_path)
    scorer = Mauve(featurizer="fake")
    good = scorer.score(records("g", 60, "run-a"), context).values
    bad = scorer.score(records("x", 60, "run-b"), context).values
    assert good["mauve"] > bad["mauve"] and good["frontier_integral"] < bad["frontier_integral"]
    human_calls = [c for c in fake.calls if c[0].startswith("h")]
    assert len(human_calls) == 1  # once for both runs
    cached = list((tmp_path / "features" / "fake-test").glob("human-*.npy"))
    assert len(cached) == 1
    featurize._MEMORY.clear()  # a new process: the file is reused, nothing recomputed
    again = scorer.score(records("g", 60, "run-a"), context).values
    assert again == good and len([c for c in fake.calls if c[0].startswith("h")]) == 1
    run_features = fake([f"g{i}" for i in range(60)])
    expected = [compute_mauve(p_features=np.load(cached[0]), q_features=run_features, seed=seed).mauve
                for seed in range(25, 30)]  # the default: seeds 25..29
    assert good["mauve"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_human_row_gets_no_mauve_and_intervals(fake):
    human = records("h", 60, "human")
    assert Mauve(featurizer="fake").score(human, ctx(human=human)).values == {}
    check_intervals(Mauve(featurizer="fake"), records("g", 60, "run"), {"human": human}, resamples=100)


@pytest.mark.parametrize("options, key", [
    ({"featurizer": ""}, "^featurizer: "),
    ({"batch_size": 0}, "^batch_size: "),
    ({"max_tokens": "long"}, "^max_tokens: "),
    ({"num_buckets": 1}, "^num_buckets: "),
    ({"num_buckets": "many"}, "^num_buckets: "),
    ({"scaling": 0}, "^scaling: "),
    ({"seed": None}, "^seed: "),
    ({"seeds": 0}, "^seeds: "),
    ({"seeds": 2.5}, "^seeds: "),
])
def test_options_are_validated_naming_the_key(options, key):
    with pytest.raises(UserError, match=key):
        Mauve(**options)


TEXTS = ["The river runs north of the city.", "A short one.", "", "Music and film in the old school, "
         "played during the second season by the team."]


def test_minilm_matches_sentence_transformers_and_is_batch_invariant():
    featurize._LOADED.clear()
    ours = featurize.get_featurizer("minilm", batch_size=2)(TEXTS)
    single = featurize.get_featurizer("minilm", batch_size=1)(TEXTS)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, single, atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(featurize.minilm_path()), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_hf_path_featurizer_takes_last_token_like_mauve(tiny_model_dir):
    import torch
    from mauve.utils import featurize_tokens_from_model
    from transformers import AutoModel, AutoTokenizer

    ours = featurize.get_featurizer(str(tiny_model_dir), batch_size=3, max_tokens=16)(TEXTS[:2] + TEXTS[3:])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    tokens = [tokenizer.encode(t, return_tensors="pt", truncation=True, max_length=16) for t in TEXTS[:2] + TEXTS[3:]]
    reference = featurize_tokens_from_model(model, tokens, batch_size=1).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert featurize.get_featurizer(str(tiny_model_dir), batch_size=3, max_tokens=16)(TEXTS[2:3]).shape == (1, 32)


def test_model_featurizer_uses_the_evaluated_model(tiny_model_dir, monkeypatch):
    from evalharness.generation import models

    calls = []
    real = models.load_model

    def recording(name, **kwargs):
        calls.append((name, kwargs))
        return real(name, **kwargs)

    monkeypatch.setattr(models, "load_model", recording)
    monkeypatch.setattr(featurize, "_LOADED", {})
    model_feats = featurize.get_featurizer("model", model_name=str(tiny_model_dir))(TEXTS[:2])
    hf_feats = featurize.get_featurizer(str(tiny_model_dir))(TEXTS[:2])
    assert calls == [(str(tiny_model_dir), {"device": "cpu", "dtype": "float32"})]
    np.testing.assert_allclose(model_feats, hf_feats, atol=1e-5)  # same network, same last-token state


def minilm_alone(featurizer, text):
    """One text, no batch, no padding, no mask: what its MiniLM feature is by definition."""
    import torch

    ids = featurizer.tokenizer.encode(text, truncation=True, max_length=featurizer.max_tokens)
    with torch.no_grad():
        hidden = featurizer.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    return torch.nn.functional.normalize(hidden.mean(1), dim=1)[0].numpy()


MIXED = ["", "Short.", TEXTS[0], TEXTS[3] * 3, "word " * 400, TEXTS[1], "", "river " * 300 + "end", TEXTS[3]]


@pytest.mark.parametrize("threads", [1, 2])
def test_minilm_batches_equal_each_text_alone(threads, monkeypatch):
    """Sorted, token-budgeted batches side by side on threads: every feature within 1e-6 of its
    text featurised alone, empty and over-long (truncated to 256 pieces) texts included."""
    import torch

    monkeypatch.setattr(featurize, "CPU_BATCH_TOKENS", 600)  # the long texts get batches of their own
    featurize._LOADED.clear()
    f = featurize.get_featurizer("minilm", batch_size=3)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = f(MIXED)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    reference = np.stack([minilm_alone(f, t) for t in MIXED])
    assert np.abs(ours - reference).max() <= 1e-6
    featurize._LOADED.clear()


def test_plan_is_one_tokenizer_call_with_budgeted_batches(monkeypatch):
    monkeypatch.setattr(featurize, "CPU_BATCH_TOKENS", 600)
    featurize._LOADED.clear()
    f = featurize.get_featurizer("minilm", batch_size=3)
    encoded, chunks = f.plan(MIXED)
    assert encoded == [f._encode(t) for t in MIXED]
    assert max(map(len, encoded)) == 256
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(MIXED)))
    assert all(len(c) <= 3 and (len(c) == 1 or len(c) * max(len(encoded[i]) for i in c) <= 600) for c in chunks)
    assert f.plan(list(MIXED))[1] == chunks  # a pure function of the texts (ranks share it out)
    assert f.plan([]) == ([], [])
    featurize._LOADED.clear()
