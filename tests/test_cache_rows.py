"""Lazy row choice in a KV cache: the same keys and values as choosing rows at once."""

import sys

import pytest
import torch
from transformers.cache_utils import DynamicCache

from evalharness.generation.allocator import keep_freed_memory
from evalharness.generation.cache_rows import defer_row_selection, gather_append


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_reordering_on_append_equals_index_select_then_cat():
    g = seeded()
    cached, new = torch.randn(6, 2, 5, 3, generator=g), torch.randn(6, 2, 1, 3, generator=g)
    rows = torch.tensor([1, 1, 0, 5, 3, 3])
    assert torch.equal(gather_append(cached, rows, new), torch.cat([cached[rows], new], dim=-2))


def test_deferred_choices_compose_and_may_change_the_row_count():
    """Two choices before the next append (the second indexes the first's result), growing 3
    rows to 6 as contrastive search repeats each row for its candidates."""
    g = seeded()
    keys, values = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    lazy, eager = DynamicCache(), DynamicCache()
    for cache in (lazy, eager):
        cache.update(keys.clone(), values.clone(), 0)
    defer_row_selection(lazy)
    first, second = torch.tensor([2, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2])
    for cache in (lazy, eager):
        cache.reorder_cache(first)
        cache.reorder_cache(second)
    new_keys, new_values = torch.randn(6, 2, 1, 5, generator=g), torch.randn(6, 2, 1, 5, generator=g)
    got = lazy.update(new_keys, new_values, 0)
    expected = eager.update(new_keys, new_values, 0)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert lazy.get_seq_length() == 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_setting_applies_on_linux():
    assert keep_freed_memory() is True
