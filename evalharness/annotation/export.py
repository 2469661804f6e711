"""RESULTS_DIR/judgements.csv: the ratings in the form the `huse` scorer reads.

Columns run,prompt_id,annotator,typicality; one row per (annotator, text) with the annotator's
current rating (an integer 1-6); the human continuations are run `human`. Rows are sorted by
run (in plan order), prompt id and annotator, so the file is stable from one export to the next.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

from evalharness.annotation.plan import Plan
from evalharness.annotation.store import JudgementStore
from evalharness.errors import UserError
from evalharness.store import write_atomic

COLUMNS = ("run", "prompt_id", "annotator", "typicality")
FILE_NAME = "judgements.csv"


def judgement_rows(plan: Plan, store: JudgementStore) -> list[tuple[str, str, str, int]]:
    run_order = {run: index for index, run in enumerate(plan.options.runs)}
    rows = []
    for annotator, item_id, typicality in store.current_ratings():
        item = plan.items.get(item_id)
        if item is None:
            raise UserError(f"annotation/judgements.sqlite: rating of item {item_id!r}, which annotation/plan.json "
                            "does not have; the store belongs to another plan")
        rows.append((item.run, item.prompt_id, annotator, typicality))
    return sorted(rows, key=lambda row: (run_order[row[0]], row[1], row[2]))


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A CSV file's text: the header, then the rows (quoted where needed, \\n line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def export_judgements(root: Path, plan: Plan, store: JudgementStore, output: Path | None = None) -> tuple[Path, int]:
    rows = judgement_rows(plan, store)
    path = Path(output) if output else Path(root) / FILE_NAME
    write_atomic(path, csv_text(COLUMNS, rows))
    return path, len(rows)
