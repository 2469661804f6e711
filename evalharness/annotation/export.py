"""RESULTS_DIR/judgements.csv: the ratings in the form the `huse` scorer reads.

Columns run,prompt_id,annotator,typicality; one row per (annotator, text) with the annotator's
current rating (an integer 1-6); the human continuations are run `human`. Rows are sorted by
run (in plan order), prompt id and annotator, so the file is stable from one export to the next.

Only counted ratings are written: a lab annotator's, and a crowd participant's once the
platform approved their work (`annotate import`); pending ones only with include_pending.
Runs of the plan whose generations are no longer in the results folder are left out with a
one-line note (a stale run must not block the others).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from evalharness.annotation.plan import Plan, available_runs
from evalharness.annotation.store import JudgementStore
from evalharness.errors import UserError
from evalharness.store import write_atomic

logger = logging.getLogger(__name__)

COLUMNS = ("run", "prompt_id", "annotator", "typicality")
FILE_NAME = "judgements.csv"


@dataclass(frozen=True)
class Exported:
    path: Path
    rows: int
    pending_left_out: int
    runs_skipped: tuple[str, ...]


def export_runs(root: Path, plan: Plan, runs: list[str] | None) -> tuple[list[str], list[str]]:
    """(runs to write, runs of the plan skipped because the results folder no longer has them)."""
    if runs:
        unknown = [run for run in runs if run not in plan.options.runs]
        if unknown:
            raise UserError(f"--runs: {unknown[0]} is not a run of annotation/plan.json (its runs: "
                            f"{', '.join(plan.options.runs)})")
    present = set(available_runs(root))
    wanted = [run for run in plan.options.runs if not runs or run in runs]
    return [run for run in wanted if run in present], [run for run in wanted if run not in present]


def judgement_rows(plan: Plan, store: JudgementStore, runs: list[str],
                   include_pending: bool = False) -> tuple[list[tuple[str, str, str, int]], int]:
    """(rows of the counted ratings of `runs`, pending ratings left out)."""
    run_order = {run: index for index, run in enumerate(runs)}
    rows, left_out = [], 0
    for annotator, item_id, typicality, counted in store.current_ratings():
        item = plan.items.get(item_id)
        if item is None:
            raise UserError(f"annotation/judgements.sqlite: rating of item {item_id!r}, which annotation/plan.json "
                            "does not have; the store belongs to another plan")
        if item.run not in run_order:
            continue
        if not counted and not include_pending:
            left_out += 1
            continue
        rows.append((item.run, item.prompt_id, annotator, typicality))
    return sorted(rows, key=lambda row: (run_order[row[0]], row[1], row[2])), left_out


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A CSV file's text: the header, then the rows (quoted where needed, \\n line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def export_judgements(root: Path, plan: Plan, store: JudgementStore, output: Path | None = None,
                      runs: list[str] | None = None, include_pending: bool = False) -> Exported:
    chosen, skipped = export_runs(root, plan, runs)
    for run in skipped:
        logger.info("note: annotate export: run %s of the plan has no generations in %s any more; its ratings "
                    "are left out", run, root)
    rows, left_out = judgement_rows(plan, store, chosen, include_pending)
    path = Path(output) if output else Path(root) / FILE_NAME
    write_atomic(path, csv_text(COLUMNS, rows))
    return Exported(path, len(rows), left_out, tuple(skipped))
