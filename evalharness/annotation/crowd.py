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

Import (`annotate import`), recognised by its columns:
- MTurk's Batch_..._results.csv (AssignmentId, WorkerId, AssignmentStatus, Input.*,
  Answer.item_N). Workers are stored under a pseudonym (an HMAC of the worker id). Submitted
  -> the ratings are stored, pending; Approved -> counted; Rejected -> withdrawn (its ratings
  leave the current ratings). Importing the file again after statuses changed applies the
  changes, and only them.
- Prolific's submissions export (Submission id, Participant id, Status, ...) of participants
  who rated on the served page: APPROVED -> counted; AWAITING REVIEW or ACTIVE -> pending;
  REJECTED, RETURNED, TIMED-OUT -> withdrawn (ratings and HIT copy released, place free).
Any bad row stops the import with one line naming the row, and nothing is imported.
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
from evalharness.annotation.store import COUNTED, PENDING, WITHDRAWN, JudgementStore
from evalharness.errors import UserError
from evalharness.store import write_atomic

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
PROLIFIC_PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
PARTICIPANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Matched with fullmatch (a trailing newline is not an id)."""


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

def groups_in_plan_order(plan: Plan) -> list[Group]:
    """The groups in the order the plan hands out their first copies (a seeded shuffle
    across runs), not grouped by run: MTurk workers reach the batch's rows in this order."""
    first_copies = [hit.group_id for hit in plan.hits if hit.replica == 0]
    return [plan.group_by_id[group_id] for group_id in first_copies]


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
  <div id="items">
{blocks}
  </div>
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
    // Each worker sees the texts in an order of their own, seeded by their worker id (a reload
    // keeps it; the preview, without one, is shuffled at random). Answers stay tied to the
    // item ids by their field names, whatever the order.
    function seededRandom(seed) {{
      var h = 2166136261;
      for (var i = 0; i < seed.length; i++) {{ h = Math.imul(h ^ seed.charCodeAt(i), 16777619) >>> 0; }}
      return function () {{  // mulberry32
        h = (h + 0x6D2B79F5) >>> 0;
        var t = Math.imul(h ^ (h >>> 15), h | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      }};
    }}
    var params = new URLSearchParams(window.location.search);
    var worker = params.get('workerId') || params.get('assignmentId');
    var group = document.querySelector('input[name="group_id"]').value;
    var random = worker ? seededRandom(worker + '|' + group) : Math.random;
    var sections = Array.prototype.slice.call(document.querySelectorAll('section.item'));
    for (var i = sections.length - 1; i > 0; i--) {{
      var j = Math.floor(random() * (i + 1));
      var swap = sections[i]; sections[i] = sections[j]; sections[j] = swap;
    }}
    var box = document.getElementById('items');
    sections.forEach(function (section, k) {{
      box.appendChild(section);
      section.querySelector('legend').textContent = 'Text ' + (k + 1) + ': how typical is it?';
    }});
  </script>
</crowd-form>
"""


def write_crowd_files(root: Path, plan: Plan, public_url: str) -> list[Path]:
    folder = annotation_dir(root)
    columns = batch_columns(plan)
    batch = csv_text(columns, [list(batch_row(plan, group, columns).values()) for group in groups_in_plan_order(plan)])
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


# --- results import: MTurk and Prolific ----------------------------------------------------

MTURK_STATUS = {"Submitted": PENDING, "Approved": COUNTED, "Rejected": WITHDRAWN}
PROLIFIC_STATUS = {"APPROVED": COUNTED, "AWAITING REVIEW": PENDING, "ACTIVE": PENDING,
                   "REJECTED": WITHDRAWN, "RETURNED": WITHDRAWN, "TIMED-OUT": WITHDRAWN}
PROLIFIC_COLUMNS = ("Submission id", "Participant id", "Status")


def read_results(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [(reader.line_num, row) for row in reader]
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read it as a CSV file ({exc})") from None


def platform_status(row: dict, column: str, known: dict[str, str], where: str) -> tuple[str, str]:
    """(our status, the platform's word) of a row; UserError naming the row for any other word."""
    word = (row.get(column) or "").strip()
    if word not in known:
        raise UserError(f"{where}: {column} {word!r} is none of {', '.join(known)}")
    return known[word], word


def parse_assignment(plan: Plan, row: dict, where: str) -> dict:
    """One MTurk results row -> {assignment_id, annotator, group_id, status, platform_status,
    ratings}; UserError naming the row if bad. A rejected row's answers are not read."""
    if None in row or any(value is None for value in row.values()):
        raise UserError(f"{where}: has a different number of fields than the header")
    assignment, worker = row["AssignmentId"].strip(), row["WorkerId"].strip()
    if not assignment or not worker:
        raise UserError(f"{where}: AssignmentId and WorkerId must not be empty")
    group = plan.group_by_id.get(row["Input.group_id"].strip())
    if group is None:
        raise UserError(f"{where}: Input.group_id {row['Input.group_id']!r} is not a group of annotation/plan.json "
                        "(was the batch made from another plan?)")
    status, word = platform_status(row, "AssignmentStatus", MTURK_STATUS, where)
    return {"assignment_id": assignment, "annotator": worker_name(plan, worker), "group_id": group.group_id,
            "status": status, "platform_status": word,
            "ratings": [] if status == WITHDRAWN else parse_answers(group, row, where)}


def parse_answers(group: Group, row: dict, where: str) -> list[tuple[str, int]]:
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
    return ratings


def import_mturk(plan: Plan, store: JudgementStore, path: Path, columns: list[str], rows) -> dict:
    missing = [c for c in ("AssignmentId", "WorkerId", "AssignmentStatus", "Input.group_id") if c not in columns]
    if missing:
        raise UserError(f"{path}: no column {missing[0]}; expected MTurk's batch results CSV for annotation/mturk_batch.csv")
    assignments, seen = [], set()
    for line, row in rows:
        where = f"{path}, line {line}"
        assignment = parse_assignment(plan, row, where)
        for key in (assignment["assignment_id"], (assignment["annotator"], assignment["group_id"])):
            if key in seen:
                raise UserError(f"{where}: repeats an assignment (same AssignmentId, or the same worker on the same HIT)")
            seen.add(key)
        assignments.append(assignment)
    return {"platform": "MTurk", "rows": len(assignments), **store.import_mturk(assignments)}


def prolific_annotator(plan: Plan, store: JudgementStore, row: dict, where: str) -> tuple[str, str] | None:
    """(pseudonym, group id) of the participant of a Prolific row who signed up here, None if
    they never did. One participant in several of this plan's studies is told apart by the
    row's Completion code (each study has its own)."""
    participant = row["Participant id"].strip()
    if not PARTICIPANT_ID.fullmatch(participant):
        raise UserError(f"{where}: Participant id {participant!r} is not a Prolific participant id")
    names = {participant_name(plan, g.group_id, participant): g.group_id for g in plan.groups}
    joined = store.signed_up(list(names))
    if len(joined) > 1:
        code = (row.get("Completion code") or "").strip().upper()
        joined = [name for name in joined if completion_code(plan, names[name]) == code]
        if len(joined) != 1:
            raise UserError(f"{where}: participant {participant} took several studies of this plan and the row's "
                            "Completion code does not say which one it is; export each study separately with that column")
    return (joined[0], names[joined[0]]) if joined else None


def import_prolific(plan: Plan, store: JudgementStore, path: Path, rows) -> dict:
    submissions, seen, strangers = [], set(), 0
    for line, row in rows:
        where = f"{path}, line {line}"
        if None in row or any(value is None for value in row.values()):
            raise UserError(f"{where}: has a different number of fields than the header")
        status, word = platform_status(row, "Status", PROLIFIC_STATUS, where)
        submission = row["Submission id"].strip()
        found = prolific_annotator(plan, store, row, where)
        if not submission or submission in seen:
            raise UserError(f"{where}: Submission id is empty or repeated")
        seen.add(submission)
        if found is None:
            strangers += 1  # never opened the page: nothing of theirs is stored
            continue
        submissions.append({"submission_id": submission, "annotator": found[0], "group_id": found[1],
                            "status": status, "platform_status": word})
    return {"platform": "Prolific", "rows": len(rows), "never_joined": strangers, **store.import_prolific(submissions)}


def import_results(plan: Plan, store: JudgementStore, path: Path) -> dict:
    """MTurk's batch results or Prolific's submissions export, told apart by their columns."""
    columns, rows = read_results(path)
    if all(column in columns for column in PROLIFIC_COLUMNS):
        return import_prolific(plan, store, path, rows)
    if "AssignmentId" in columns:
        return import_mturk(plan, store, path, columns, rows)
    raise UserError(f"{path}: no column AssignmentId (MTurk's batch results) nor {', '.join(PROLIFIC_COLUMNS)} "
                    "(Prolific's submissions export)")
