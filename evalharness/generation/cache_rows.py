"""Choosing a KV cache's rows lazily: search methods pick rows every step, and the pick costs a
copy of the whole cache. Deferred, it is done by the copy that appends the next token anyway.

Beam search reorders its rows by parent beam every step; contrastive search keeps each row's
chosen candidate and repeats it for the next step's candidates. transformers' DynamicLayer does
each as a copy of every key and value (index_select, repeat_interleave, indexing), then copies
everything again to append the new token (cat). A layer made lazy by `defer_row_selection`
only records the rows it is asked for (`reorder_cache(rows)`, any number of rows, repeats
allowed) and gathers them in the copy that appends: one pass over the cache per step. The
result is the same floats: only copies are saved."""

from __future__ import annotations

import torch

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - older transformers: rows are chosen as the cache does
    DynamicLayer = object


def defer_row_selection(cache) -> None:
    """Make each plain DynamicLayer of `cache` choose its rows lazily (other layer kinds, e.g.
    sliding-window ones, keep their own reorder_cache, which copies at once: same result)."""
    for layer in getattr(cache, "layers", ()) if DynamicLayer is not object else ():
        if type(layer) is DynamicLayer:
            layer.__class__ = RowsOnAppend
            layer.rows = None


class RowsOnAppend(DynamicLayer):
    """A DynamicLayer whose reorder_cache only records the rows to keep; the next update gathers
    them and appends the new keys/values in one copy (DynamicLayer: index_select, then cat)."""

    rows: torch.Tensor | None = None

    def reorder_cache(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.keys.device)
        self.rows = rows if self.rows is None else self.rows[rows]

    def update(self, key_states, value_states, *args, **kwargs):
        if self.rows is None:
            return super().update(key_states, value_states, *args, **kwargs)
        self.keys = gather_append(self.keys, self.rows, key_states)
        self.values = gather_append(self.values, self.rows, value_states)
        self.rows = None
        return self.keys, self.values


def gather_append(cached: torch.Tensor, rows: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """cat([cached[rows], new], dim=-2) in one pass over the cache."""
    length = cached.shape[-2]
    out = cached.new_empty((*rows.shape, *cached.shape[1:-2], length + new.shape[-2], cached.shape[-1]))
    torch.index_select(cached, 0, rows, out=out[..., :length, :])
    out[..., length:, :] = new
    return out
