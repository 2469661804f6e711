"""Human documents -> Prompts: read a source, cut a context, keep the true continuation."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Iterator, Sequence

from evalharness.experiment.config import DataConfig
from evalharness.errors import UserError, first_line
from evalharness.records import Prompt
from evalharness.builtin.corpora import builtin_documents
from evalharness.generation import models

Document = tuple[str, str]  # (doc_id, text)

WIKITEXT_HEADING = re.compile(r"^\s*(=\s+)+[^=].*?(\s+=)+\s*$")
BLANK_LINE = re.compile(r"\n[ \t]*\n")
CHARS_PER_TOKEN_BOUND = 64  # generous: no byte-level BPE token spans more characters than this


def read_documents(cfg: DataConfig) -> list[Document]:
    """All documents of the configured source, in source order."""
    source = cfg.source
    if source.startswith("builtin:"):
        return builtin_documents(source.split(":", 1)[1], cfg.split)
    if source.startswith("hf:"):
        return _hf_documents(source[3:], cfg)
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"data.source: no such file {source!r}")
    text = _read_text(path)
    if path.suffix == ".jsonl":
        return _jsonl_documents(text, cfg.text_field, source)
    if path.suffix == ".txt":
        return _txt_documents(text)
    raise UserError(f"data.source: {source!r} is neither .jsonl, .txt, hf:<dataset> nor builtin:<name>")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"data.source: {path} is not UTF-8 text (byte {exc.start})") from None


def _jsonl_documents(text: str, field: str, source: str) -> list[Document]:
    docs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"data.source: {source} line {number} is not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
            raise UserError(f"data.text_field: {source} line {number} has no string field {field!r}")
        docs.append((str(obj.get("id", number)), obj[field]))
    return docs


def _txt_documents(text: str) -> list[Document]:
    """Documents are separated by blank lines; a WikiText heading (` = Title = `) also ends
    one and is itself dropped (it is markup, not prose). doc_id = first line number."""
    docs, current, start = [], [], 1
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or WIKITEXT_HEADING.match(line):
            if current:
                docs.append((str(start), "\n".join(current)))
            current, start = [], number + 1
        else:
            current.append(line)
    if current:
        docs.append((str(start), "\n".join(current)))
    return docs


def _hf_documents(spec: str, cfg: DataConfig) -> list[Document]:
    """hf:<path>[/<config>] through datasets.load_dataset; a local folder works the same way."""
    try:
        import datasets
    except ImportError:
        raise UserError("data.source: hf: sources need the `datasets` package (pip install datasets)") from None
    path, config = spec, cfg.hf_config
    local = Path(spec).expanduser().exists()
    if config is None and not local and spec.count("/") >= 1:
        path, config = spec.rsplit("/", 1)
    if not local and not models.hub_offline_mode() and not models.hub_reachable():
        raise UserError(f"data.source: hf:{spec} is not a local folder and the Hugging Face Hub is unreachable; "
                        "use a local .jsonl/.txt file, builtin:pydocs, or set HF_HUB_OFFLINE=1 to use your cache")
    try:
        rows = datasets.load_dataset(path, config, split=cfg.split)
    except Exception as exc:  # datasets raises many types (connection, missing split, ...)
        reason = first_line(exc)
        raise UserError(f"data.source: could not load hf:{spec} (split {cfg.split!r}): {reason}") from None
    if cfg.text_field not in rows.column_names:
        raise UserError(f"data.text_field: hf:{spec} has no column {cfg.text_field!r}; "
                        f"columns: {', '.join(rows.column_names)}")
    texts = rows[cfg.text_field]
    if cfg.layout == "lines":
        return _txt_documents("\n".join(t.rstrip("\n") for t in texts if isinstance(t, str)))
    return [(str(i), text) for i, text in enumerate(texts) if isinstance(text, str)]


# --- prompts -----------------------------------------------------------------------------------

def build_prompts(docs: Sequence[Document], tokenizer, cfg: DataConfig, seed: int,
                  eos_id: int | None, limit: int | None = None) -> list[Prompt]:
    """The first num_prompts qualifying documents in a seeded shuffle of the source.

    Prompt i is the same whatever num_prompts is, so a --limit run is a prefix of the full one."""
    wanted = min(cfg.num_prompts, limit) if limit else cfg.num_prompts
    prompts: list[Prompt] = []
    for doc_id, context_ids, rest in _tokenized(docs, tokenizer, cfg, seed):
        if len(rest) >= cfg.min_continuation:
            prompts.append(_prompt(len(prompts), doc_id, context_ids, rest, tokenizer, cfg, eos_id))
            if len(prompts) == wanted:
                return prompts
    context = cfg.context_tokens
    raise UserError(
        f"data: only {len(prompts)} of {len(docs)} documents in {cfg.source} qualify (context {context} "
        f"tokens + at least {cfg.min_continuation} continuation tokens); lower data.num_prompts to "
        f"{len(prompts)} or data.min_continuation_tokens, or use more text" if docs else
        f"data: {cfg.source} holds no documents")


def _tokenized(docs, tokenizer, cfg: DataConfig, seed: int) -> Iterator[tuple[str, list[int], list[int]]]:
    """(doc_id, context ids, remaining ids) in seeded order, tokenizing in chunks."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    needed = (cfg.first_paragraph_max_tokens if cfg.context_tokens == "first_paragraph"
              else cfg.context_tokens) + cfg.max_new_tokens
    budget = CHARS_PER_TOKEN_BOUND * needed + 1000
    for start in range(0, len(order), 256):
        chunk = [docs[i] for i in order[start:start + 256]]
        heads, tails = zip(*(_split_context(text[:budget], cfg) for _, text in chunk))
        head_ids = _encode(tokenizer, heads)
        tail_ids = _encode(tokenizer, tails)
        for (doc_id, text), head, tail in zip(chunk, head_ids, tail_ids):
            if len(text) > budget:
                tail = tail[:-1]  # the cut may have split the last token
            ids = head + tail if cfg.context_tokens == "first_paragraph" else tail
            n = len(head) if cfg.context_tokens == "first_paragraph" else cfg.context_tokens
            if cfg.context_tokens == "first_paragraph" and not 1 <= n <= cfg.first_paragraph_max_tokens:
                continue
            if len(ids) > n:
                yield doc_id, ids[:n], ids[n:]


def _split_context(text: str, cfg: DataConfig) -> tuple[str, str]:
    """first_paragraph: (paragraph, the rest from the blank line on); else ("", text)."""
    if cfg.context_tokens != "first_paragraph":
        return "", text
    match = BLANK_LINE.search(text)
    return (text, "") if match is None else (text[:match.start()], text[match.start():])


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if not any(texts):
        return [[] for _ in texts]
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def _prompt(index: int, doc_id: str, context_ids: list[int], rest: list[int], tokenizer,
            cfg: DataConfig, eos_id: int | None) -> Prompt:
    ended = len(rest) < cfg.max_new_tokens
    human = rest[:cfg.max_new_tokens]
    human_ids = human + [eos_id] if ended and eos_id is not None else human
    return Prompt(
        prompt_id=f"{index:05d}", doc_id=doc_id,
        context_text=tokenizer.decode(context_ids), context_ids=tuple(context_ids),
        human_ids=tuple(human_ids), human_text=tokenizer.decode(human), human_ended=ended,
    )
