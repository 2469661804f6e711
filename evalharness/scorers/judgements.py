"""Human typicality judgements of texts: `judgements.csv`, read and checked.

One row per rating, columns (others are ignored):
    run         a run of the experiment, or `human` for the human continuations
    prompt_id   the prompt whose continuation was rated (prompts.jsonl)
    annotator   who rated it (any non-empty id)
    typicality  an integer 1-6, the scale of Holtzman et al.'s MTurk form (after Hashimoto et al.
                2019): 1 Invalid, 2 Rare, 3 Specific, 4 Average, 5 Typical, 6 Very typical
The file sits in the results folder (written by `python -m evalharness annotate export DIR`),
or anywhere given as the `judgements` option of the `huse` scorer. Rows of a run that is not in
the experiment (a stale run folder, a run dropped from the config) are skipped with a one-line
note. A bad row (unknown prompt, a rating outside 1-6, an empty annotator, the same annotator
rating the same run and prompt twice) stops scoring with one line naming the file, line and problem.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from evalharness.records import TYPICALITY_SCALE as RATING_SCALE
from evalharness.errors import UserError

logger = logging.getLogger(__name__)

FILE = "judgements.csv"
COLUMNS = ("run", "prompt_id", "annotator", "typicality")
SCALE = {value: label for value, label, _ in RATING_SCALE}
HOW_TO_GET = ("collect typicality ratings of the generations with `python -m evalharness annotate RESULTS_DIR`, "
              "then `python -m evalharness annotate export RESULTS_DIR` (or write judgements.csv yourself with "
              "columns run,prompt_id,annotator,typicality), or remove huse from scorers")


@dataclass(frozen=True)
class Judgements:
    path: Path
    ratings: dict[tuple[str, str], tuple[int, ...]]
    """(run, prompt id) -> every typicality rating of that text."""

    def mean_typicality(self, run: str) -> dict[str, float]:
        """prompt id -> mean rating of the run's text for that prompt, for every rated text."""
        return {pid: sum(r) / len(r) for (name, pid), r in self.ratings.items() if name == run}


def location(results_dir: Path | None, option: str | None) -> Path:
    if option:
        return Path(option)
    if results_dir is None:
        raise UserError("huse: no results folder to find judgements.csv in; set the scorer option judgements: PATH")
    return Path(results_dir) / FILE


def fingerprint(path: Path) -> str:
    """Content hash (scores are cached on it): 'missing' when there is no file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def load(path: Path, runs: tuple[str, ...], prompt_ids: tuple[str, ...]) -> Judgements:
    """The judgements, checked against the experiment's runs and prompts; at least one rating."""
    if not path.is_file():
        raise UserError(f"huse: no judgements at {path}; {HOW_TO_GET}")
    stat = path.stat()
    return _load(path, stat.st_mtime_ns, stat.st_size, runs, prompt_ids)


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime: int, size: int, runs: tuple[str, ...], prompt_ids: tuple[str, ...]) -> Judgements:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            ratings = _rows(csv.DictReader(handle), path, set(runs), set(prompt_ids))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV ({exc})") from None
    if not ratings:
        raise UserError(f"huse: {path} holds no judgements; {HOW_TO_GET}")
    return Judgements(path, {key: tuple(v) for key, v in ratings.items()})


def _rows(reader: csv.DictReader, path: Path, runs: set[str], prompt_ids: set[str]) -> dict[tuple[str, str], list[int]]:
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}, line 1: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    ratings: dict[tuple[str, str], list[int]] = {}
    first_seen: dict[tuple[str, str, str], int] = {}
    skipped: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        run, pid, annotator, value = (str(row.get(c) or "").strip() for c in COLUMNS)
        if run not in runs and run:
            skipped[run] = skipped.get(run, 0) + 1
            continue
        problem = _problem(run, pid, annotator, value, runs, prompt_ids)
        key = (annotator, run, pid)
        if problem is None and key in first_seen:
            problem = (f"annotator {annotator!r} rated run {run!r} prompt {pid!r} twice "
                       f"(first on line {first_seen[key]})")
        if problem:
            raise UserError(f"{path}, line {line}: {problem}")
        first_seen[key] = line
        ratings.setdefault((run, pid), []).append(int(value))
    if skipped:
        logger.info("note: huse: %s rates run(s) not in the experiment, skipped: %s", path,
                    ", ".join(f"{run} ({count} rows)" for run, count in sorted(skipped.items())))
    return ratings


def _problem(run: str, pid: str, annotator: str, value: str, runs: set[str], prompt_ids: set[str]) -> str | None:
    if run not in runs:
        return f"unknown run {run!r} (runs: {', '.join(sorted(runs))})"
    if pid not in prompt_ids:
        return f"unknown prompt_id {pid!r} (not in prompts.jsonl)"
    if not annotator:
        return "empty annotator"
    if not (value.isdigit() and int(value) in SCALE):
        scale = ", ".join(f"{k} {v}" for k, v in SCALE.items())
        return f"typicality must be an integer from 1 to 6 ({scale}); got {value!r}"
    return None
