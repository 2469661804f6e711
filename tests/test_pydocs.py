"""The builtin:pydocs corpus: splits are deterministic, disjoint, non-empty and big enough."""

from __future__ import annotations

import pytest

from evalharness.builtin.corpora import BUILTIN_CORPORA, get_corpus, pydocs
from evalharness.errors import UserError


def _normalised(docs):
    return {" ".join(text.split()) for _, text in docs}


def test_splits_are_non_empty_and_cover_the_corpus():
    sizes = {split: len(pydocs.documents(split)) for split in pydocs.SPLITS}
    assert all(size > 50 for size in sizes.values()), sizes
    assert sum(sizes.values()) == len(pydocs._all_documents())
    assert sizes["train"] > sizes["test"] > sizes["valid"]


def test_no_identity_or_text_is_shared_between_splits():
    splits = {split: pydocs.documents(split) for split in pydocs.SPLITS}
    for a, b in [("train", "test"), ("train", "valid"), ("valid", "test")]:
        assert not {i for i, _ in splits[a]} & {i for i, _ in splits[b]}
        assert not _normalised(splits[a]) & _normalised(splits[b])
        # Chunks of one topic or docstring never straddle splits.
        parents = lambda docs: {i.split("#")[0] for i, _ in docs}  # noqa: E731
        assert not parents(splits[a]) & parents(splits[b])


def test_ids_and_texts_are_unique_within_the_corpus():
    docs = pydocs._all_documents()
    assert len({i for i, _ in docs}) == len(docs)
    assert len(_normalised(docs)) == len(docs)


def test_order_and_content_are_deterministic_across_rebuilds():
    first = pydocs.documents("test")
    fingerprint = pydocs.fingerprint()
    pydocs._all_documents.cache_clear()
    pydocs._split_docs.cache_clear()
    assert pydocs.documents("test") == first
    assert pydocs.fingerprint() == fingerprint
    assert [pydocs.split_of(i) for i, _ in first] == ["test"] * len(first)


def test_returned_list_is_a_copy():
    docs = pydocs.documents("valid")
    docs.clear()
    assert pydocs.documents("valid")


def test_test_split_holds_enough_long_documents():
    # The default experiment takes 500+ prompts of ~32 context + up to 128 continuation tokens.
    tokenizers = pytest.importorskip("tokenizers")
    from evalharness.builtin.train_config import DEFAULT_OUTPUT

    path = DEFAULT_OUTPUT / "tokenizer.json"
    if not path.is_file():
        pytest.skip("builtin tokenizer not trained yet")
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    texts = [text for _, text in pydocs.documents("test")]
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert sum(length >= 100 for length in lengths) >= 600


def test_known_documents_have_stable_identities():
    ids = {i.split("#")[0] for split in pydocs.SPLITS for i, _ in pydocs.documents(split)}
    assert "topic:assert" in ids
    assert "doc:json.decoder.JSONDecoder" in ids and "doc:json" in ids
    assert not any(".tests." in i or i.startswith("doc:test.") for i in ids)


def test_documents_are_clean_prose():
    for _, text in pydocs.documents("valid"):
        assert len(text.split()) >= pydocs.MIN_WORDS
        assert text == text.strip() and "\n\n\n" not in text


def test_bad_split_names_the_yaml_key():
    with pytest.raises(UserError, match=r"data\.split.*'tets'.*did you mean 'test'"):
        pydocs.documents("tets")


def test_stats_and_registry():
    stats = pydocs.stats()
    assert set(stats) == set(pydocs.SPLITS)
    assert stats["test"]["documents"] == len(pydocs.documents("test"))
    assert stats["train"]["characters"] > 500_000
    assert get_corpus("builtin:pydocs") is pydocs is BUILTIN_CORPORA["pydocs"]
    with pytest.raises(UserError, match=r"data\.source.*did you mean 'builtin:pydocs'"):
        get_corpus("builtin:pydoc")
