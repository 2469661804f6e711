"""A test-only kill switch: kill points chosen by the code's progress, not by the clock.

`EVALHARNESS_TEST_KILL_AFTER=<event>:<n>[@<rank>]` makes the process SIGKILL itself right after
its n-th `<event>` (on rank `<rank>` only, default 0), exactly as `kill -9` from outside would,
so a crash test hits every kill point it intends however busy the machine is. Events:

  round    a round of batches (generation, human text, shared featurisation, the oracle's
           forward passes) is done: on rank 0 its records are appended to the results folder,
           on another rank its results are sent to rank 0 (parallel.for_each_share)
  scores   a run's scores.json is written (scoring.cached_scores)

Counts start at zero in every process: a resumed run counts only the work it does itself.
`EVALHARNESS_TEST_SIGNAL=SIGSTOP` sends that signal instead (a rank that hangs for real).
Unset (always, outside the tests), `reached` returns at once.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_ENV = "EVALHARNESS_TEST_KILL_AFTER"
SIGNAL_ENV = "EVALHARNESS_TEST_SIGNAL"

_counts: Counter[str] = Counter()


def reached(event: str, rank: int = 0) -> None:
    """Count one `event` of this process; SIGKILL it if that is the kill point it was given."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    _counts[event] += 1
    target, _, where = spec.partition("@")
    name, _, count = target.partition(":")
    if name == event and int(count) == _counts[event] and int(where or 0) == rank:
        os.kill(os.getpid(), getattr(signal, os.environ.get(SIGNAL_ENV, "SIGKILL")))
