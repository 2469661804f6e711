"""Documents from .txt/.jsonl/hf: sources, contexts, human continuations, seeded selection."""

import json
from pathlib import Path

import pytest

from evalharness.experiment.config import DataConfig
from evalharness.experiment.data import build_prompts, read_documents
from evalharness.errors import UserError
from evalharness.generation.models import load_model
from helpers import synthetic_documents, write_jsonl

WIKITEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2" / "test.txt"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_model(str(tiny_model_dir), "cpu").tokenizer


def test_txt_documents_split_on_blank_lines_and_wikitext_headings(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\ufeff = Title = \n \n First para line one\nline two\n \n = = Section = = \n Second para\n"
                    " = Other = \n Third para\n", encoding="utf-8")
    docs = read_documents(DataConfig(source=str(path)))
    assert [t for _, t in docs] == [" First para line one\nline two", " Second para", " Third para"]
    assert docs[0][0] == "3"  # doc id = first line number


def test_jsonl_documents_use_the_text_field_and_id(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "x1", "body": "hello"}) + "\n\n" + json.dumps({"body": "world"}) + "\n")
    assert read_documents(DataConfig(source=str(path), text_field="body")) == [("x1", "hello"), ("3", "world")]
    with pytest.raises(UserError, match="data.text_field: .* line 1 has no string field 'text'"):
        read_documents(DataConfig(source=str(path)))


def test_hf_source_reads_a_local_dataset_folder(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", ["one doc", "two doc"])
    docs = read_documents(DataConfig(source=f"hf:{folder}", split="test"))
    assert [t for _, t in docs] == ["one doc", "two doc"]
    with pytest.raises(UserError, match="data.text_field: .* no column 'body'"):
        read_documents(DataConfig(source=f"hf:{folder}", split="test", text_field="body"))


def test_hf_rows_that_are_lines_are_regrouped_into_documents(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "wikitext_like"
    folder.mkdir()
    lines = [" = Title = \n", "", " First paragraph .\n", " still first .\n", "", " = = Part = = \n", "", " Second .\n"]
    write_jsonl(folder / "test.jsonl", lines)
    docs = read_documents(DataConfig(source=f"hf:{folder}", split="test", layout="lines"))
    assert [t for _, t in docs] == [" First paragraph .\n still first .", " Second ."]


@pytest.mark.parametrize("content,message", [
    (None, "no such file"), (b"caf\xe9", "not UTF-8"), (b"{not json\n", "line 1 is not JSON")])
def test_bad_sources(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_documents(DataConfig(source=str(path)))


def test_prompts_cut_context_and_keep_the_true_continuation(tok):
    texts = synthetic_documents(30, seed=5)
    cfg = DataConfig(source="x", num_prompts=10, context_tokens=8, max_new_tokens=20)
    prompts = build_prompts(list(enumerate(texts)), tok, cfg, seed=0, eos_id=tok.eos_token_id)
    assert [p.prompt_id for p in prompts] == [f"{i:05d}" for i in range(10)]
    for p in prompts:
        full = tok(texts[int(p.doc_id)], add_special_tokens=False)["input_ids"]
        assert list(p.context_ids) == full[:8]
        assert list(p.human_ids[:20]) == full[8:28][: len(p.human_ids)]
        assert len(p.human_ids) == 20 and not p.human_ended  # synthetic docs are long


def test_a_document_that_ends_inside_the_window_ends_with_eos(tok):
    cfg = DataConfig(source="x", num_prompts=1, context_tokens=3, max_new_tokens=500, min_continuation_tokens=2)
    [p] = build_prompts([("0", "The river city was built during the war.")], tok, cfg, 0, tok.eos_token_id)
    assert p.human_ended and p.human_ids[-1] == tok.eos_token_id
    assert tok.decode(list(p.context_ids) + list(p.human_ids[:-1])) == "The river city was built during the war."


def test_selection_is_seeded_and_a_limit_is_a_prefix(tok):
    docs = list(enumerate(synthetic_documents(40, seed=6)))
    cfg = DataConfig(source="x", num_prompts=12, context_tokens=8, max_new_tokens=16)
    a = build_prompts(docs, tok, cfg, 0, tok.eos_token_id)
    assert a == build_prompts(docs, tok, cfg, 0, tok.eos_token_id)
    assert [p.doc_id for p in a] != [p.doc_id for p in build_prompts(docs, tok, cfg, 1, tok.eos_token_id)]
    assert build_prompts(docs, tok, cfg, 0, tok.eos_token_id, limit=5) == a[:5]


def test_too_few_qualifying_documents_says_how_many(tok):
    docs = [("0", "short"), ("1", "also short")] + list(enumerate(synthetic_documents(3, seed=7), start=2))
    cfg = DataConfig(source="d.jsonl", num_prompts=4, context_tokens=8, max_new_tokens=16)
    with pytest.raises(UserError, match=r"only 3 of 5 documents in d.jsonl qualify .* lower data.num_prompts to 3"):
        build_prompts(docs, tok, cfg, 0, tok.eos_token_id)
    with pytest.raises(UserError, match="holds no documents"):
        build_prompts([], tok, cfg, 0, tok.eos_token_id)


def test_first_paragraph_contexts(tok):
    docs = [("0", "A short opening line.\n\nThen the body " + "goes on and on " * 20),
            ("1", "An opening paragraph that runs on " * 10 + "\n\nbody " * 30)]
    cfg = DataConfig(source="x", num_prompts=1, context_tokens="first_paragraph", max_new_tokens=10)
    [p] = build_prompts(docs, tok, cfg, 0, tok.eos_token_id)
    assert p.doc_id == "0" and p.context_text == "A short opening line."
    assert p.human_text.startswith("\n\nThen the body")


@pytest.mark.skipif(not WIKITEXT.exists(), reason="../shared/data/wikitext-2 is not beside the repository")
def test_wikitext_test_split_gives_paragraph_documents(tok):
    docs = read_documents(DataConfig(source=str(WIKITEXT)))
    assert len(docs) > 500 and not any(t.lstrip().startswith("= ") for _, t in docs)
    prompts = build_prompts(docs, tok, DataConfig(source=str(WIKITEXT), num_prompts=50), 0, tok.eos_token_id)
    assert len({p.doc_id for p in prompts}) == 50
