"""Let the C allocator keep freed memory, so large CPU tensors reuse pages instead of refaulting them.

glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with
a fresh mmap and unmaps it on free; PyTorch's CPU allocator has no cache of its own, so a
decode loop that allocates the same few-MiB tensors every step pays the kernel to map and zero
every page again, step after step. Beam search suffers most: its key/value cache is copied into
a new tensor of tens of MiB per layer and step. Serving large blocks from the heap and never
trimming it makes those pages stay mapped and get reused (the default experiment's beam run:
7.1 s -> 5.4 s per chunk of 32 prompts on the project's CPU machine). Memory use still peaks
where it did: freed blocks are reused, only not handed back to the kernel before exit.

This is a process-wide setting, so the command line applies it (`run`), not the library."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # bytes of free heap top glibc may keep before giving memory back


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep its free top (glibc's mallopt). True if
    applied; False elsewhere (another C library, another OS), where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
