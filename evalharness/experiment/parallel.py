"""Data-parallel runs under torchrun: who this process is, its fixed share of the work, and
the exchange that brings every rank's records to rank 0.

A plain `python -m evalharness run` is a world of one process and none of this talks to
torch.distributed. Under `torchrun` every rank loads the model, rank 0 alone reads and writes
the results folder, and work is split into *tasks* (batches) that a single process would form
too: in round r rank i computes task r * size + i, and rank 0 receives the round's results over
torch.distributed and consumes them in task order. Nothing about a task's result depends on
which rank computed it (each prompt owns its RNG), so the records - and the bytes of every file
rank 0 writes - are those of a single process, whatever the number of ranks.

Failures: every exchange carries either a rank's result or its error. When any rank fails, all
ranks stop with the same error (`RankFailure`, or `UserError` for a mistake the user can fix),
which the CLI prints once, on rank 0, naming the rank. A rank that neither answers nor dies
(hung) is found by a monitored barrier that rank 0 runs before every exchange, with the
`--timeout` of the run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

import torch

from evalharness.errors import RankFailure, UserError, first_line
from evalharness.experiment import faults
from evalharness.experiment.torchrun import launched_by_torchrun

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 1800.0
"""How long a rank waits for its peers at an exchange before it calls them hung (torch's default)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (a world of one without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    group: Any = None
    """The gloo process group that carries Python objects (records, errors) between ranks."""
    probe: Any = None
    """A second gloo group, only for asking which peer stopped answering after a collective failed."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # -- collectives (each is a no-op in a world of one) --------------------------------------
    def on_main(self, action: Callable[[], T]) -> T:
        """Run `action` on rank 0 only and give every rank its result (or its error)."""
        if not self.distributed:
            return action()
        payload, error = _attempt(action) if self.is_main else (None, None)
        box = [_describe(error), payload]
        self._collective(lambda: torch.distributed.broadcast_object_list(box, src=0, group=self.group))
        if box[0] is not None:  # rank 0 stands for the whole run here: its error reads as in one process
            _raise(self, [(r, box[0]) for r in range(self.size)], error)
        return box[1]

    def everywhere(self, action: Callable[[], T]) -> T:
        """Run `action` on every rank; if it fails on any, fail on all with that rank's error."""
        if not self.distributed:
            return action()
        result, error = _attempt(action)
        errors: list = [None] * self.size
        self._collective(lambda: torch.distributed.all_gather_object(errors, _describe(error), group=self.group))
        _raise_if_any(self, errors, error)
        return result

    def gather_to_main(self, action: Callable[[], T]) -> list[T] | None:
        """Every rank runs `action`; rank 0 gets the list of results in rank order (others None).
        A rank that does not arrive within the timeout is reported as hung."""
        if not self.distributed:
            return [action()]
        result, error = _attempt(action)
        self._check_alive()
        gathered: list | None = [None] * self.size if self.is_main else None
        self._collective(lambda: torch.distributed.gather_object((_describe(error), result), gathered, dst=0,
                                                                 group=self.group))
        verdict = [[(r, e) for r, (e, _) in enumerate(gathered) if e is not None] if self.is_main else None]
        self._collective(lambda: torch.distributed.broadcast_object_list(verdict, src=0, group=self.group))
        if verdict[0]:
            _raise(self, verdict[0], error)
        return [r for _, r in gathered] if self.is_main else None

    def _check_alive(self, group: Any = None) -> None:
        """Rank 0 waits at most `timeout_s` for every peer; a peer that never comes is named."""
        try:
            torch.distributed.monitored_barrier(group=group or self.group, timeout=timedelta(seconds=self.timeout_s),
                                                wait_all_ranks=True)
        except RuntimeError as exc:
            raise RankFailure(hung_message(self, exc)) from None

    def _collective(self, operation: Callable[[], Any]) -> Any:
        """A collective that times out (a peer stopped answering halfway through the exchange)
        becomes a RankFailure naming the silent peer, found by a barrier on the probe group."""
        try:
            return operation()
        except RuntimeError as exc:
            self._check_alive(self.probe)  # raises, naming the peer, when one stays silent
            raise RankFailure(hung_message(self, exc)) from None

    def shutdown(self) -> None:
        """Leave the process group together: a barrier first, so no rank destroys its group while
        a peer is still working (rank 0 writes the results after the last collective), which
        can end a process in std::terminate (seen in CI) instead of its exit status."""
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def for_each_share(world: World, tasks: Sequence[T], compute: Callable[[T], R],
                   consume: Callable[[T, R], None]) -> None:
    """Split `tasks` over the ranks round by round (rank i takes task r * size + i of round r);
    rank 0 consumes every result in task order as soon as its round is complete, so a run
    killed at any point has written a prefix of what a single process would have written."""
    for start in range(0, len(tasks), world.size):
        todo = tasks[start:start + world.size]
        mine = todo[world.rank] if world.rank < len(todo) else None
        results = world.gather_to_main(lambda: None if mine is None else compute(mine))
        if world.is_main:
            for task, result in zip(todo, results):
                consume(task, result)
        faults.reached("round", world.rank)  # a no-op outside crash tests


# -- starting and ending a world --------------------------------------------------------------

def start(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """The World of this process: joins torchrun's process group when launched by it.
    nccl is the default group's backend where CUDA is used, gloo on CPU; Python objects always
    travel over a gloo group (CPU memory, no device copies)."""
    global _CURRENT
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        _CURRENT = World(timeout_s=timeout_s)
        return _CURRENT
    rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    uses_cuda = device != "cpu" and torch.cuda.is_available()
    timeout = timedelta(seconds=timeout_s)
    if uses_cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if uses_cuda else "gloo", timeout=timeout)
    group = torch.distributed.new_group(backend="gloo", timeout=timeout) if uses_cuda else torch.distributed.group.WORLD
    probe = torch.distributed.new_group(backend="gloo", timeout=timeout)
    _CURRENT = World(rank, size, local_rank, timeout_s, group, probe)
    return _CURRENT


def current() -> World:
    """The World started by this process (a world of one when none was started)."""
    return _CURRENT


_CURRENT = World()


def rank_device(device: str, world: World) -> str:
    """Under torchrun each rank takes its own GPU: cuda:LOCAL_RANK for `auto` and `cuda`."""
    if world.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return device


# -- errors -----------------------------------------------------------------------------------

def _attempt(action: Callable[[], T]) -> tuple[T | None, BaseException | None]:
    try:
        return action(), None
    except Exception as exc:  # noqa: BLE001 - reported to every rank, re-raised below
        return None, exc


def _describe(error: BaseException | None) -> tuple[str, str] | None:
    """What peers learn of an error: its kind and one line."""
    if error is None:
        return None
    if isinstance(error, UserError):
        return "user", str(error)
    if isinstance(error, RankFailure):
        return "rank", str(error)
    return "crash", cause_line(error)


def cause_line(error: BaseException) -> str:
    """One line for an unexpected error, saying plainly when it is memory."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower():
        return f"out of memory: {first_line(error)}"
    return f"{type(error).__name__}: {first_line(error)}"


def _raise_if_any(world: World, errors: list, own: BaseException | None) -> None:
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        _raise(world, failed, own)


def _raise(world: World, failed: list[tuple[int, tuple[str, str]]], own: BaseException | None) -> None:
    """Raise the same error on every rank. A mistake every rank made alike (bad YAML, a
    missing file) reads as in a single process; otherwise the first failing rank is named."""
    rank, (kind, message) = failed[0]
    same_everywhere = len(failed) == world.size and all(f[1] == failed[0][1] for f in failed)
    text = message if same_everywhere else f"rank {rank}: {message}"
    error = UserError(text) if kind == "user" else RankFailure(text)
    error.agreed = True  # every rank raises it: the CLI prints it once, on rank 0
    raise error from own


def hung_message(world: World, exc: BaseException) -> str:
    """gloo says "Ranks 1, 3 failed to pass monitoredBarrier in 5000 ms" on rank 0."""
    found = re.search(r"Ranks? ([\d, ]+) failed to pass", str(exc))
    if world.is_main and found:
        ranks = ", ".join(r.strip() for r in found.group(1).split(",") if r.strip())
        return (f"rank {ranks} did not answer within {world.timeout_s:g} s (hung or died); "
                "raise --timeout if one batch can take that long")
    if world.is_main:
        return f"a peer did not answer within {world.timeout_s:g} s: {first_line(exc)}"
    return f"rank {world.rank}: rank 0 did not answer within {world.timeout_s:g} s: {first_line(exc)}"
