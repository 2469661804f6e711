"""`builtin:pydocs`: human-written English prose that every CPython installation carries.

Sources (nothing is downloaded):

* the documentation topics that `help()` shows (`pydoc_data.topics.topics`), one per keyword;
* the docstrings of the standard library's modules, classes and functions, read with `ast`
  from the stdlib source files (test packages, site-packages and unparsable files skipped).

A *parent* text (a topic or a docstring, cleaned with `inspect.cleandoc`) is kept when it holds
at least `MIN_WORDS` words. Parents of more than `1.5 * CHUNK_WORDS` words are cut at paragraph
boundaries into chunks of at least `CHUNK_WORDS` words (~160 tokens: a 32-token context plus a
128-token continuation) except a tail of 50-99 words; each chunk is one document with id
``"<parent id>#<k>"`` (k from 1). Unsplit parents keep their own id.
Deduplication (after whitespace normalisation): a paragraph of >= `DEDUP_WORDS` words is kept
only in the longest parent that has it (pydoc's "compound" topic repeats the "if", "while", ...
topics word for word), then documents with identical text are dropped but one. Without this,
~9% of test documents were mostly train text; with it ~3% still share half their 8-word
shingles with train (near-duplicate docstrings, reworded copies).

Identities: ``"topic:<keyword>"`` and ``"doc:<module>[.<Class>][.<function>]"``, e.g.
``"topic:assert"``, ``"doc:json.decoder.JSONDecoder"``, ``"topic:specialnames#3"``.

Split: sha256 of the *parent* id picks a per-mille bucket, so all chunks of one topic or
docstring fall in the same split (no neighbouring paragraph leaks from train into test):
bucket < `TEST_PERMILLE` is test, the next `VALID_PERMILLE` are valid, the rest train.
The test share is large (40%) because the whole corpus holds only ~3,100 documents and the
default experiment needs 500+ test documents of >= 100 tokens.

Within a split, documents are ordered by a salted sha256 of their id: a fixed order that is
also a fair shuffle, so "the first N documents" is an unbiased sample.

The corpus depends on the Python version that runs it (its stdlib and topics); `fingerprint()`
identifies the exact text so a results folder can record which corpus it used. Because the split
hashes ids, not texts, a document keeps its split across Python versions: text the builtin model
was trained on stays out of test on another Python (up to paragraphs moving between parents).
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import inspect
import os
import re
import sys
import sysconfig
from pathlib import Path

from evalharness.errors import UserError

SPLITS = ("train", "valid", "test")
MIN_WORDS = 30
CHUNK_WORDS = 100
DEDUP_WORDS = 10
TEST_PERMILLE = 400
VALID_PERMILLE = 50

# Directory names never read: test suites (their docstrings describe tests, not the library),
# third-party packages, caches. Matched on any path component below the stdlib root.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib-dynload"}
)
_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def documents(split: str) -> list[tuple[str, str]]:
    """Return the (doc_id, text) pairs of one split, in a fixed order (see module docstring)."""
    return list(_split_docs(_check_split(split)))


def stats() -> dict[str, dict[str, int]]:
    """Documents, characters and whitespace-separated words per split."""
    out = {}
    for split in SPLITS:
        docs = _split_docs(split)
        out[split] = {
            "documents": len(docs),
            "characters": sum(len(text) for _, text in docs),
            "words": sum(len(text.split()) for _, text in docs),
        }
    return out


def fingerprint() -> str:
    """A short sha256 of every split's ids and texts; changes whenever the corpus changes."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for doc_id, text in _split_docs(split):
            digest.update(f"{split}\0{doc_id}\0{text}\0".encode())
    return digest.hexdigest()[:16]


def split_of(doc_id: str) -> str:
    """The split a document id belongs to (decided by its parent id, before any '#')."""
    bucket = int(hashlib.sha256(doc_id.split("#")[0].encode()).hexdigest(), 16) % 1000
    if bucket < TEST_PERMILLE:
        return "test"
    if bucket < TEST_PERMILLE + VALID_PERMILLE:
        return "valid"
    return "train"


def _check_split(split: str) -> str:
    if split in SPLITS:
        return split
    close = difflib.get_close_matches(str(split), SPLITS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(
        f"data.split: unknown split {split!r} for builtin:pydocs{hint}; known: {', '.join(SPLITS)}"
    )


@functools.lru_cache(maxsize=None)
def _split_docs(split: str) -> tuple[tuple[str, str], ...]:
    docs = [doc for doc in _all_documents() if split_of(doc[0]) == split]
    docs.sort(key=lambda doc: hashlib.sha256(f"order:{doc[0]}".encode()).hexdigest())
    return tuple(docs)


@functools.lru_cache(maxsize=None)
def _all_documents() -> tuple[tuple[str, str], ...]:
    """Every document of the corpus, deduplicated, in id order."""
    parents = dict(_stdlib_docstrings(Path(sysconfig.get_paths()["stdlib"])))
    parents.update(_topics())
    seen_paragraphs: set[str] = set()
    docs = []
    # Longest parents first keep their repeated paragraphs: the "compound" topic keeps the text
    # that the "if", "while", ... topics repeat, and those shrink (or vanish) instead.
    for parent_id in sorted(parents, key=lambda i: (-len(parents[i]), i)):
        text = _unseen_paragraphs(_clean(parents[parent_id]), seen_paragraphs)
        if len(text.split()) < MIN_WORDS:
            continue
        chunks = _chunk(text)
        for k, chunk in enumerate(chunks, start=1):
            docs.append((parent_id if len(chunks) == 1 else f"{parent_id}#{k}", chunk))
    return tuple(sorted(_unique_texts(docs)))


def _unseen_paragraphs(text: str, seen: set[str]) -> str:
    """`text` without its paragraphs of >= DEDUP_WORDS words that an earlier parent already had
    (whitespace-normalised): the same passage must not be in train and in test."""
    kept = []
    for paragraph in re.split(r"\n\s*\n", text):
        key = " ".join(paragraph.split())
        if len(key.split()) >= DEDUP_WORDS:
            if key in seen:
                continue
            seen.add(key)
        kept.append(paragraph)
    return "\n\n".join(kept).strip()


def _unique_texts(docs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop documents whose whitespace-normalised text repeats an earlier one."""
    seen: set[str] = set()
    unique = []
    for doc_id, text in docs:
        key = " ".join(text.split())
        if key not in seen:
            seen.add(key)
            unique.append((doc_id, text))
    return unique


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return {f"topic:{name}": text for name, text in topics.items()}


def _stdlib_docstrings(root: Path) -> dict[str, str]:
    """Docstrings of all stdlib modules below `root`, keyed "doc:<qualified name>"."""
    found: dict[str, str] = {}
    for path in _source_files(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue  # a file this Python cannot read or parse is simply not part of the corpus
        module = _module_name(path, root)
        doc = ast.get_docstring(tree)
        if doc:
            found.setdefault(f"doc:{module}", doc)
        for name, doc in _definition_docstrings(tree, module):
            found.setdefault(f"doc:{name}", doc)
    return found


def _source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if _wanted_dir(d))
        files.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return files


def _wanted_dir(name: str) -> bool:
    return name not in _SKIP_DIRS and not name.startswith(("config-", "."))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _definition_docstrings(node: ast.AST, prefix: str):
    """(qualified name, docstring) of every class/function, also inside if/try blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _DEFS):
            name = f"{prefix}.{child.name}"
            doc = ast.get_docstring(child)
            if doc:
                yield name, doc
            yield from _definition_docstrings(child, name)
        elif isinstance(child, ast.stmt):
            yield from _definition_docstrings(child, prefix)


def _clean(text: str) -> str:
    text = inspect.cleandoc(text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _chunk(text: str) -> list[str]:
    """Cut at blank lines into chunks of >= CHUNK_WORDS words; a tail under half that joins the
    last chunk, a longer tail stands alone."""
    groups: list[list[str]] = []
    current: list[str] = []
    words = 0
    for paragraph in re.split(r"\n\s*\n", text):
        current.append(paragraph)
        words += len(paragraph.split())
        if words >= CHUNK_WORDS:
            groups.append(current)
            current, words = [], 0
    if current:
        if groups and words < CHUNK_WORDS // 2:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return ["\n\n".join(group).strip() for group in groups]


def describe() -> dict[str, object]:
    """What a results manifest should record about this corpus."""
    return {
        "name": "builtin:pydocs",
        "python": sys.version.split()[0],
        "fingerprint": fingerprint(),
        "splits": stats(),
    }
