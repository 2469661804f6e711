"""Builtin corpora: text that ships with the project (or with Python) so runs work offline.

Entry points: get_corpus(name), builtin_documents(name, split). A builtin corpus is a module
with `documents(split) -> list[(doc_id, text)]`, `stats()` and `describe()`; a config names one
as ``builtin:<name>``.
"""

from __future__ import annotations

import difflib
from types import ModuleType

from evalharness.builtin.corpora import pydocs
from evalharness.errors import UserError

BUILTIN_CORPORA: dict[str, ModuleType] = {
    "pydocs": pydocs,
}


def get_corpus(name: str, where: str = "data.source") -> ModuleType:
    """The builtin corpus called `name` (without the ``builtin:`` prefix), or a UserError."""
    name = name.removeprefix("builtin:")
    if name in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[name]
    close = difflib.get_close_matches(name, BUILTIN_CORPORA, n=1)
    hint = f" (did you mean 'builtin:{close[0]}'?)" if close else ""
    known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_CORPORA))
    raise UserError(f"{where}: unknown builtin corpus 'builtin:{name}'{hint}; known: {known}")


def builtin_documents(name: str, split: str) -> list[tuple[str, str]]:
    """(doc_id, text) of one split of the builtin corpus `name`; UserError naming
    `data.source` / `data.split` for an unknown corpus or split."""
    return get_corpus(name).documents(split)
