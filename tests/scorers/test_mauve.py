"""MAUVE against mauve-text's compute_mauve on the same features; featurisers and their cache."""

import zlib

import numpy as np
import pytest
from mauve import compute_mauve

from evalharness.scorers import featurize
from evalharness.errors import UserError
from evalharness.scorers.mauve import Mauve, auto_buckets, mauve_from_labels
from scorer_helpers import check_intervals, ctx, gen


def features(n, dim=24, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


@pytest.mark.parametrize("shift, buckets", [(0.0, "auto"), (0.4, "auto"), (1.0, 7)])
def test_full_sample_value_equals_compute_mauve(shift, buckets):
    p, q = features(120, seed=1), features(120, shift=shift, seed=2)
    ours = Mauve(num_buckets=buckets, seed=25).score_features(p, q).values
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
    assert first.ci == again.ci
    for metric, value in first.values.items():
        low, high = first.ci[metric]
        assert low <= value <= high


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
    expected = compute_mauve(p_features=np.load(cached[0]), q_features=fake([f"g{i}" for i in range(60)]), seed=25)
    assert good["mauve"] == pytest.approx(expected.mauve, abs=1e-12)


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
