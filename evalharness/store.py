"""The results directory: manifest, prompts, per-run generations, scores; atomic and resumable.

Layout:
  <dir>/manifest.json            config, versions, git commit, seed, machine, start/end time
  <dir>/prompts.jsonl            the prompts themselves (self-sufficient: re-score without the source)
  <dir>/<run>/run.json           the run's spec and fingerprint (what determines its generations)
  <dir>/<run>/generations.jsonl  one Generation per prompt, appended as they finish
  <dir>/<run>/scores.json        cached scores, keyed by what determines them
  <dir>/human/...                the human continuations, as one more run
  <dir>/.evalharness.lock        held by the `run` writing the folder (.owner: which process)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import filelock

from evalharness.errors import UserError
from evalharness.records import Generation, Prompt


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextmanager
def atomic_writer(path: Path, binary: bool = False) -> Iterator[IO]:
    """A handle on a temporary file in the target's folder; when the block ends, fsync and rename
    it over the target: a reader sees the old file or the new one, never half of either. An
    exception inside the block leaves the target as it was and removes the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write text (or bytes) with atomic_writer."""
    with atomic_writer(path, binary=isinstance(data, bytes)) as handle:
        handle.write(data)


NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
"""JSON has no infinity or NaN: files the harness writes hold these strings instead (an
infinite perplexity of human text under a truncating sampler is "inf"); `finite_or_named`
turns them back into floats."""


def json_safe(obj: Any) -> Any:
    """obj with every non-finite float replaced by its NON_FINITE name."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def finite_or_named(value: Any) -> Any:
    """A metric value read back from JSON: "inf", "-inf", "nan" as floats, anything else as is;
    lists (intervals) element by element."""
    if isinstance(value, list):
        return [finite_or_named(v) for v in value]
    return NON_FINITE.get(value, value) if isinstance(value, str) else value


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path, repair: bool = False) -> list[dict]:
    """Complete records of a JSON Lines file. A trailing line without its newline was cut by a
    crash mid-append: it is ignored, and with repair=True removed from the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append whole lines in one write, then fsync, so a crash leaves at most one partial line."""
    blob = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    if not blob:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


class ResultsDir:
    """One experiment's results folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run_dir(self, run: str) -> Path:
        return self.root / run

    def generations_path(self, run: str) -> Path:
        return self.run_dir(run) / "generations.jsonl"

    def remove_stale_temporaries(self) -> None:
        """A run killed inside write_atomic (or while saving features) leaves its temporary file
        behind; the next run, the folder's only writer, removes it before writing anything."""
        for pattern in (".*.tmp", "*/.*.tmp", "cache/features/*/*.tmp.npy"):
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)

    # -- prompts --
    def write_prompts(self, prompts: list[Prompt]) -> None:
        write_atomic(self.root / "prompts.jsonl",
                     "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in prompts))

    def read_prompts(self) -> list[Prompt]:
        return [Prompt.from_dict(d) for d in read_jsonl(self.root / "prompts.jsonl")]

    def check_prompts(self, prompts: list[Prompt]) -> None:
        """Prompts already on disk must be the ones we would build now (same id, same content)."""
        old = {p.prompt_id: p for p in self.read_prompts()}
        for p in prompts:
            if p.prompt_id in old and old[p.prompt_id] != p:
                raise UserError(f"{self.root}: prompt {p.prompt_id} on disk differs from the one this "
                                "configuration selects (the documents of data.source or the seed changed); rerun with --overwrite or choose another --output")

    # -- runs --
    def open_run(self, run: str, spec: dict) -> dict[str, Generation]:
        """Prepare a run folder and return the generations already complete in it.

        A run folder made with a different fingerprint (model, data, sampler, seed, ...) is
        never reused: that is an error unless the caller removed it (--overwrite)."""
        folder = self.run_dir(run)
        meta_path = folder / "run.json"
        self.check_run(run, spec)
        if not meta_path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_json(meta_path, spec)
        return self.read_generations(run, repair=True)

    def check_run(self, run: str, spec: dict) -> None:
        """Refuse, naming the changed settings (e.g. `params.temperature`), a run folder whose
        generations were made otherwise. Called for every run before anything is written, so a
        refused run leaves the whole folder as it was."""
        meta_path = self.run_dir(run) / "run.json"
        if not meta_path.exists():
            return
        old = read_json(meta_path)
        if old.get("fingerprint") != spec["fingerprint"]:
            changed = changed_keys(old.get("determined_by", {}), spec["determined_by"])
            raise UserError(f"{self.run_dir(run)}: holds generations made with other settings "
                            f"({', '.join(changed) or 'unknown'}); rerun with --overwrite or choose another --output")

    def append_generations(self, run: str, generations: list[Generation]) -> None:
        append_jsonl(self.generations_path(run), (g.to_dict() for g in generations))

    def read_generations(self, run: str, repair: bool = False) -> dict[str, Generation]:
        """prompt id -> first complete record (repair=True also cuts a crash's partial line)."""
        out: dict[str, Generation] = {}
        for record in read_jsonl(self.generations_path(run), repair=repair):
            out.setdefault(record["prompt_id"], Generation.from_dict(record))
        return out


def changed_keys(old: dict, new: dict) -> list[str]:
    """The dotted keys (`data.context_tokens`, `params.p`) whose values differ, sorted."""
    flat_old, flat_new = flatten(old), flatten(new)
    return sorted(k for k in set(flat_old) | set(flat_new) if flat_old.get(k) != flat_new.get(k))


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def ensure_writable(root: Path) -> None:
    """Fail early, before any work, if the results folder cannot be created or written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--output: cannot write to {root}: {exc.strerror or exc}") from None


LOCK_FILE = ".evalharness.lock"
OWNER_FILE = ".evalharness.lock.owner"
LOCK_FILES = (LOCK_FILE, OWNER_FILE)


@contextmanager
def results_lock(root: Path) -> Iterator[None]:
    """Hold the results folder for one writer (the single-writer assumption of every file in it).

    An OS file lock (filelock: flock on POSIX), so a run that was killed holds nothing: the
    system releases its lock with its process and the next run goes ahead. Who holds it is
    written beside it, so a second run can say which process to wait for."""
    lock = filelock.FileLock(str(root / LOCK_FILE), timeout=0)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise UserError(f"{root}: in use by another evalharness run ({lock_owner(root)}); wait for it to end "
                        "or choose another --output") from None
    except OSError as exc:
        raise UserError(f"--output: cannot write to {root}: {exc.strerror or exc}") from None
    try:
        (root / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        yield
    finally:
        (root / OWNER_FILE).unlink(missing_ok=True)  # still ours: the lock is released after
        lock.release()


def lock_owner(root: Path) -> str:
    """"process 1234 on host, since ..." from the owner file, as well as it can be read."""
    try:
        owner = json.loads((root / OWNER_FILE).read_text(encoding="utf-8"))
        return f"process {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "process unknown"
