"""Crowd studies: an MTurk batch for the plan's groups, Prolific study links to the served page,
and the import of MTurk's results CSV into the same store.

MTurk: one row of annotation/mturk_batch.csv per group (one HIT; set "assignments per HIT" to
--per-item: MTurk never gives one worker two assignments of a HIT, so nobody rates a text
twice). annotation/mturk_question.html is our own question template for it. The texts travel
base64-encoded (UTF-8) and a small script in the template puts them on the page as text: the
page then shows exactly the text, whatever MTurk does or does not escape when it substitutes
${...}, and no HTML or script in a model's output can reach the page as markup. (A readable
copy of the texts is in plan.json.)

Prolific: annotation/prolific_studies.csv has one study per group: the URL to give Prolific
(our served page, with Prolific's participant placeholders), the number of places
(--per-item) and the completion code the page shows when the participant is done.

Import: MTurk's Batch_..._results.csv (columns AssignmentId, WorkerId, AssignmentStatus,
Input.*, Answer.item_N). Workers are stored under a pseudonym (an HMAC of the worker id).
Rejected assignments are skipped; assignments imported before are skipped; any bad row stops
the import with one line naming the row, and nothing is imported.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import re
from pathlib import Path
from urllib.parse import quote

from evalharness.annotation.export import csv_text
from evalharness.annotation.plan import Group, Plan, annotation_dir
from evalharness.records import TYPICALITY_INSTRUCTIONS, TYPICALITY_SCALE as SCALE, is_rating
from evalharness.annotation.store import JudgementStore
from evalharness.errors import UserError
from evalharness.store import write_atomic

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
PROLIFIC_PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def study_token(plan: Plan, group_id: str) -> str:
    return plan.derived("study", group_id, 32)


def completion_code(plan: Plan, group_id: str) -> str:
    return plan.derived("completion", group_id, 8).upper()


def participant_name(plan: Plan, group_id: str, participant: str) -> str:
    """Pseudonym of a Prolific participant in one study (their id itself is not stored)."""
    return "prolific-" + plan.derived("participant", f"{group_id}\0{participant}", 12)


def worker_name(plan: Plan, worker_id: str) -> str:
    return "mturk-" + plan.derived("worker", worker_id, 12)


def b64(text: str | None) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if text is not None else ""


# --- MTurk batch and template ----------------------------------------------------------------

def batch_columns(plan: Plan) -> list[str]:
    width = max(len(group.item_ids) for group in plan.groups)
    fields = ["item_{}_id", "item_{}_b64"] + (["item_{}_context_b64"] if plan.options.with_context else [])
    return ["group_id"] + [f.format(i) for i in range(1, width + 1) for f in fields]


def batch_row(plan: Plan, group: Group, columns: list[str]) -> dict[str, str]:
    row = dict.fromkeys(columns, "")
    row["group_id"] = group.group_id
    for i, item_id in enumerate(group.item_ids, 1):
        item = plan.items[item_id]
        row[f"item_{i}_id"], row[f"item_{i}_b64"] = item_id, b64(item.text)
        if plan.options.with_context:
            row[f"item_{i}_context_b64"] = b64(item.context)
    return row


def question_template(plan: Plan) -> str:
    width = max(len(group.item_ids) for group in plan.groups)
    blocks = "\n".join(item_block(i, plan.options.with_context) for i in range(1, width + 1))
    scale = "\n".join(f"    <li><b>{value} {label}</b>: {help_text}</li>" for value, label, help_text in SCALE)
    return TEMPLATE.format(scale=scale, blocks=blocks, instructions=html.escape(TYPICALITY_INSTRUCTIONS))


def item_block(i: int, with_context: bool) -> str:
    context = f' data-context-b64="${{item_{i}_context_b64}}"' if with_context else ""
    radios = "".join(f'\n      <label><input type="radio" name="item_{i}" value="{value}" required> {value} {label}</label>'
                     for value, label, _ in SCALE)
    return (f'  <section class="item" data-b64="${{item_{i}_b64}}"{context}>\n'
            f'    <input type="hidden" name="item_{i}_id" value="${{item_{i}_id}}">\n'
            f'    <p class="context"></p>\n    <p class="text"></p>\n'
            f'    <fieldset><legend>Text {i}: how typical is it?</legend>{radios}\n    </fieldset>\n  </section>')


TEMPLATE = """<!-- evalharness typicality ratings: MTurk question template for annotation/mturk_batch.csv -->
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <style>
    .item {{ border: 1px solid #bbb; border-radius: 6px; padding: 0.6em 1em; margin: 1em 0; }}
    .text, .context {{ white-space: pre-wrap; font-family: Georgia, serif; font-size: 1.05em; }}
    .context {{ color: #555; }} .context:empty {{ display: none; }}
    fieldset {{ border: 0; padding: 0; }} label {{ display: inline-block; margin: 0.2em 0.8em 0.2em 0; }}
  </style>
  <input type="hidden" name="group_id" value="${{group_id}}">
  <h2>How typical is each text?</h2>
  <p>{instructions}</p>
  <ol class="scale">
{scale}
  </ol>
  <noscript>This task needs JavaScript to show the texts.</noscript>
{blocks}
  <script>
    // Texts arrive base64-encoded (UTF-8) and are shown as text, never as markup.
    function fromBase64(value) {{
      return new TextDecoder().decode(Uint8Array.from(atob(value), function (c) {{ return c.charCodeAt(0); }}));
    }}
    document.querySelectorAll('section.item').forEach(function (section) {{
      var text = section.getAttribute('data-b64');
      if (!text || text.indexOf('$' + '{{') === 0) {{ section.remove(); return; }}  // a shorter HIT
      section.querySelector('.text').textContent = fromBase64(text);
      var context = section.getAttribute('data-context-b64');
      if (context) {{ section.querySelector('.context').textContent = fromBase64(context) + ' \\u2026'; }}
    }});
  </script>
</crowd-form>
"""


def write_crowd_files(root: Path, plan: Plan, public_url: str) -> list[Path]:
    folder = annotation_dir(root)
    columns = batch_columns(plan)
    batch = csv_text(columns, [list(batch_row(plan, group, columns).values()) for group in plan.groups])
    studies = [{"group_id": g.group_id, "places": plan.options.per_item,
                "study_url": f"{public_url.rstrip('/')}/?study={study_token(plan, g.group_id)}&{PROLIFIC_PLACEHOLDERS}",
                "completion_code": completion_code(plan, g.group_id)} for g in plan.groups]
    paths = [folder / "mturk_batch.csv", folder / "mturk_question.html", folder / "prolific_studies.csv"]
    write_atomic(paths[0], batch)
    write_atomic(paths[1], question_template(plan))
    write_atomic(paths[2], csv_text(list(studies[0]), [list(study.values()) for study in studies]))
    os.chmod(paths[2], 0o600)  # study links let anyone in
    return paths


def completion_url(code: str) -> str:
    return PROLIFIC_COMPLETE + quote(code)


# --- MTurk results import --------------------------------------------------------------------

def read_results(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [(reader.line_num, row) for row in reader]
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read it as a CSV file ({exc})") from None


def parse_assignment(plan: Plan, row: dict, where: str) -> dict:
    """One results row -> {assignment_id, annotator, ratings}; UserError naming the row if bad."""
    if None in row or any(value is None for value in row.values()):
        raise UserError(f"{where}: has a different number of fields than the header")
    assignment, worker = row["AssignmentId"].strip(), row["WorkerId"].strip()
    if not assignment or not worker:
        raise UserError(f"{where}: AssignmentId and WorkerId must not be empty")
    group = plan.group_by_id.get(row["Input.group_id"].strip())
    if group is None:
        raise UserError(f"{where}: Input.group_id {row['Input.group_id']!r} is not a group of annotation/plan.json "
                        "(was the batch made from another plan?)")
    ratings = []
    for i, item_id in enumerate(group.item_ids, 1):
        given_id = row.get(f"Input.item_{i}_id")
        if given_id is not None and given_id.strip() != item_id:
            raise UserError(f"{where}: Input.item_{i}_id {given_id!r} is not item {i} of group {group.group_id} in the plan")
        answer = (row.get(f"Answer.item_{i}") or "").strip()
        value = int(answer) if re.fullmatch(r"[1-6]", answer) else None
        if not is_rating(value):
            raise UserError(f"{where}: Answer.item_{i} must be an integer from 1 to 6, not {answer!r}")
        ratings.append((item_id, value))
    extra = [k for k, v in row.items() if v and v.strip() and k.startswith("Answer.item_")
             and k.removeprefix("Answer.item_").isdigit() and int(k.removeprefix("Answer.item_")) > len(group.item_ids)]
    if extra:
        raise UserError(f"{where}: {extra[0]} answers a text that group {group.group_id} does not have")
    return {"assignment_id": assignment, "annotator": worker_name(plan, worker), "ratings": ratings,
            "group_id": group.group_id}


def import_mturk(plan: Plan, store: JudgementStore, path: Path) -> dict:
    columns, rows = read_results(path)
    missing = [c for c in ("AssignmentId", "WorkerId", "Input.group_id") if c not in columns]
    if missing:
        raise UserError(f"{path}: no column {missing[0]}; expected MTurk's batch results CSV for annotation/mturk_batch.csv")
    assignments, seen, skipped = [], set(), 0
    for line, row in rows:
        where = f"{path}, line {line}"
        if (row.get("AssignmentStatus") or "").strip() == "Rejected":
            skipped += 1
            continue
        assignment = parse_assignment(plan, row, where)
        for key in (assignment["assignment_id"], (assignment["annotator"], assignment["group_id"])):
            if key in seen:
                raise UserError(f"{where}: repeats an assignment (same AssignmentId, or the same worker on the same HIT)")
            seen.add(key)
        assignments.append(assignment)
    new = store.import_assignments(assignments)
    return {"imported": len(new), "already_imported": len(assignments) - len(new), "rejected_skipped": skipped,
            "ratings": sum(len(a["ratings"]) for a in new)}
