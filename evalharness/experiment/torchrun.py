"""Was this process started by torchrun? Without torch: the CLI asks before it imports anything heavy."""

from __future__ import annotations

import os


def launched_by_torchrun() -> bool:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for every process it starts."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def rank() -> int:
    """This process's rank under torchrun; 0 for a plain process."""
    return int(os.environ.get("RANK", "0") or 0)
