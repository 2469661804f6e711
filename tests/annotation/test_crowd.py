"""`annotate mturk` (batch CSV, question template, Prolific studies) and `annotate import` of
MTurk's results CSV, round-tripped through a simulated MTurk batch into judgements.csv; the
approval gate (Submitted = pending, Rejected = withdrawn, a re-import applies changed statuses);
`annotate export --runs` and a run that left the results folder."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil

import pytest

from annotation_helpers import INJECTED, load_plan, read_db, write_results
from evalharness.annotation.crowd import completion_code, groups_in_plan_order, study_token, worker_name
from evalharness.cli import main

RUNS = ["human", "greedy", "top_k-k=40"]
UNICODE = "Café ☕ — naïve 🙂 日本語\nsecond line"
WORKERS = ["A1B2C3D4E5", "A9Z8Y7X6W5", "AQQQQQQQQQ"]


def rule(run: str, prompt_id: str, worker: str) -> int:
    return 1 + (sum(map(ord, run + worker)) + int(prompt_id)) % 6


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    root = write_results(tmp_path_factory.mktemp("crowd") / "results", RUNS, prompts=7, inject=True,
                         texts_for={("greedy", "00003"): UNICODE})
    assert main(["annotate", "mturk", str(root), "--per-item", "3", "--hit-size", "4",
                 "--public-url", "https://rate.example.org"]) == 0
    return root


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_batch_rows_carry_every_text_exactly(crowd):
    plan = load_plan(crowd)
    rows = read_csv(crowd / "annotation" / "mturk_batch.csv")
    first_copies = [hit.group_id for hit in plan.hits if hit.replica == 0]
    assert [row["group_id"] for row in rows] == first_copies  # the plan's shuffled order...
    runs = [plan.group_by_id[row["group_id"]].run for row in rows]
    assert runs != sorted(runs, key=RUNS.index)  # ...not grouped by run (seed 0)
    shown = {}
    for row, group in zip(rows, groups_in_plan_order(plan)):
        for i, item_id in enumerate(group.item_ids, 1):
            assert row[f"item_{i}_id"] == item_id
            shown[item_id] = base64.b64decode(row[f"item_{i}_b64"]).decode("utf-8")
        assert all(row[f"item_{i}_b64"] == "" for i in range(len(group.item_ids) + 1, 5))
    assert shown == {item_id: item.text for item_id, item in plan.items.items()}
    assert UNICODE in shown.values() and sum(INJECTED in text for text in shown.values()) == 3
    raw = (crowd / "annotation" / "mturk_batch.csv").read_bytes()
    assert b"<script" not in raw and max(raw) < 128  # ASCII only: no 4-byte UTF-8, no markup


def test_the_template_uses_exactly_the_batch_columns(crowd):
    template = (crowd / "annotation" / "mturk_question.html").read_text()
    columns = list(read_csv(crowd / "annotation" / "mturk_batch.csv")[0])
    assert set(re.findall(r"\$\{(\w+)\}", template)) == set(columns)
    assert len(re.findall(r'type="radio" name="item_1" value="[1-6]" required', template)) == 6
    assert "Very typical" in template and "textContent" in template and "innerHTML" not in template


def test_prolific_studies(crowd):
    plan = load_plan(crowd)
    studies = read_csv(crowd / "annotation" / "prolific_studies.csv")
    assert len(studies) == len(plan.groups)
    for study, group in zip(studies, plan.groups):
        assert study["places"] == "3" and study["completion_code"] == completion_code(plan, group.group_id)
        assert study["study_url"] == (f"https://rate.example.org/?study={study_token(plan, group.group_id)}"
                                      "&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")


def mturk_results(root, answer=None, status="Approved") -> list[dict]:
    """What MTurk's 'Download CSV' gives for the batch: one row per assignment, the batch's
    columns as Input.*, the form's fields as Answer.*; one extra assignment is rejected (and
    answered nonsense, which a rejected row may)."""
    plan = load_plan(root)
    rows = []
    for n, batch_row in enumerate(read_csv(root / "annotation" / "mturk_batch.csv")):
        group = plan.group_by_id[batch_row["group_id"]]
        for w, worker in enumerate(WORKERS + (["AREJECTED00"] if n == 0 else [])):
            row = {"HITId": f"3HIT{n:04d}", "AssignmentId": f"3ASG{n:04d}{w}", "WorkerId": worker,
                   "AssignmentStatus": "Rejected" if worker == "AREJECTED00" else status,
                   **{f"Input.{k}": v for k, v in batch_row.items()}, "Answer.group_id": group.group_id}
            for i in range(1, 5):
                item = plan.items[group.item_ids[i - 1]] if i <= len(group.item_ids) else None
                value = (answer or rule)(item.run, item.prompt_id, worker) if item else ""
                value = "nonsense" if worker == "AREJECTED00" else value
                row[f"Answer.item_{i}"] = str(value)
            rows.append(row)
    return rows


def write_results_csv(path, rows: list[dict]):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_import_then_export_gives_every_rating_once(crowd, tmp_path, capsys):
    root = shutil.copytree(crowd, tmp_path / "copy")
    results = write_results_csv(tmp_path / "Batch_1_batch_results.csv", mturk_results(root))
    assert main(["annotate", "import", str(root), str(results)]) == 0
    plan = load_plan(root)
    rows = 3 * len(plan.groups) + 1
    assert (f"MTurk: {rows} rows; {rows} new, 0 changed status, 0 unchanged; {3 * len(plan.items)} ratings added, "
            "0 withdrawn") in capsys.readouterr().out
    history = read_db(root, "SELECT COUNT(*) FROM rating_history")
    assert main(["annotate", "import", str(root), str(results)]) == 0  # again: nothing new
    assert f"0 new, 0 changed status, {rows} unchanged; 0 ratings added" in capsys.readouterr().out
    assert read_db(root, "SELECT COUNT(*) FROM rating_history") == history
    assert main(["annotate", "export", str(root)]) == 0
    rows = read_csv(root / "judgements.csv")
    assert len(rows) == 3 * len(plan.items) == 3 * 21
    assert len({(r["run"], r["prompt_id"], r["annotator"]) for r in rows}) == len(rows)
    pseudonyms = {}
    for row in rows:
        assert row["annotator"].startswith("mturk-") and not any(w in row["annotator"] for w in WORKERS)
        matches = [w for w in WORKERS if int(row["typicality"]) == rule(row["run"], row["prompt_id"], w)]
        pseudonyms.setdefault(row["annotator"], set()).update(matches)
    assert len(pseudonyms) == 3  # one pseudonym per worker, each consistent with that worker's answers
    for name, candidates in pseudonyms.items():
        assert len([r for r in rows if r["annotator"] == name]) == 21 and candidates


def make_bad(rows: list[dict], problem: str) -> list[dict]:
    rows = [dict(r) for r in rows]
    target = rows[4]
    if problem == "rating 7":
        target["Answer.item_2"] = "7"
    elif problem == "empty answer":
        target["Answer.item_1"] = ""
    elif problem == "unknown group":
        target["Input.group_id"] = "feedfacefeedface"
    elif problem == "item id changed":
        target["Input.item_1_id"] = "0" * 20
    elif problem == "repeated assignment":
        rows[5]["AssignmentId"] = target["AssignmentId"]
    elif problem == "answer beyond the group":
        short = next(r for r in rows if r["Input.item_4_id"] == "")
        short["Answer.item_4"] = "3"
        return rows
    elif problem == "rating 2.5":
        target["Answer.item_3"] = "2.5"
    return rows


@pytest.mark.parametrize("problem, message", [
    ("rating 7", r"line 6: Answer.item_2 must be an integer from 1 to 6, not '7'"),
    ("rating 2.5", r"line 6: Answer.item_3 must be an integer from 1 to 6"),
    ("empty answer", r"line 6: Answer.item_1 must be an integer from 1 to 6, not ''"),
    ("unknown group", r"line 6: Input.group_id 'feedfacefeedface' is not a group"),
    ("item id changed", r"line 6: Input.item_1_id '0+' is not item 1"),
    ("repeated assignment", r"line 7: repeats an assignment"),
    ("answer beyond the group", r"Answer.item_4 answers a text that group"),
])
def test_a_bad_row_stops_the_import_and_imports_nothing(crowd, tmp_path, capsys, problem, message):
    root = shutil.copytree(crowd, tmp_path / "copy")
    results = write_results_csv(tmp_path / "results.csv", make_bad(mturk_results(root), problem))
    assert main(["annotate", "import", str(root), str(results)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert read_db(root, "SELECT COUNT(*) FROM ratings") == [(0,)]
    assert read_db(root, "SELECT COUNT(*) FROM approvals") == [(0,)]


def test_a_file_that_is_not_an_mturk_results_csv(crowd, tmp_path, capsys):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    assert main(["annotate", "import", str(crowd), str(path)]) == 2
    assert "no column AssignmentId (MTurk's batch results) nor Submission id" in capsys.readouterr().err


def export_rows(root, *options) -> list[dict]:
    assert main(["annotate", "export", str(root), *options]) == 0
    return read_csv(root / "judgements.csv")


def test_approval_gates_mturk_ratings_and_a_reimport_applies_changed_statuses(crowd, tmp_path, capsys):
    root = shutil.copytree(crowd, tmp_path / "copy")
    plan = load_plan(root)
    submitted = mturk_results(root, status="Submitted")
    assert main(["annotate", "import", str(root), str(write_results_csv(tmp_path / "r1.csv", submitted))]) == 0
    assert export_rows(root) == []  # awaiting approval: left out, and said so
    assert f"note: {3 * len(plan.items)} crowd ratings awaiting approval left out" in capsys.readouterr().out
    assert len(export_rows(root, "--include-pending")) == 3 * len(plan.items)
    approved = [{**row, "AssignmentStatus": "Approved" if row["AssignmentStatus"] == "Submitted" else "Rejected"}
                for row in submitted]
    flipped = approved[1]
    flipped["AssignmentStatus"] = "Rejected"  # rejected after all (it was pending)
    assert main(["annotate", "import", str(root), str(write_results_csv(tmp_path / "r2.csv", approved))]) == 0
    group = plan.group_by_id[flipped["Input.group_id"]]
    assert f"{3 * len(plan.groups)} changed status, 1 unchanged; 0 ratings added, {len(group.item_ids)} withdrawn" \
        in capsys.readouterr().out
    rows = export_rows(root)
    assert len(rows) == 3 * len(plan.items) - len(group.item_ids)
    gone = {(plan.items[i].run, plan.items[i].prompt_id) for i in group.item_ids}
    rejected_worker = worker_name(plan, flipped["WorkerId"])
    assert not [r for r in rows if (r["run"], r["prompt_id"]) in gone and r["annotator"] == rejected_worker]
    assert all(sum(1 for x in rows if (x["run"], x["prompt_id"]) == key) == 2 for key in gone)
    assert read_db(root, "SELECT COUNT(*) FROM rating_history") == [(3 * len(plan.items),)]  # history kept
    flipped["AssignmentStatus"] = "Approved"  # the rejection reversed on MTurk: the ratings come back
    assert main(["annotate", "import", str(root), str(write_results_csv(tmp_path / "r3.csv", approved))]) == 0
    assert len(export_rows(root)) == 3 * len(plan.items)


def test_an_unknown_mturk_status_stops_the_import(crowd, tmp_path, capsys):
    root = shutil.copytree(crowd, tmp_path / "copy")
    rows = mturk_results(root)
    rows[2]["AssignmentStatus"] = "Rejected "  # whitespace is tolerated...
    rows[3]["AssignmentStatus"] = "rejected"   # ...another word is not
    assert main(["annotate", "import", str(root), str(write_results_csv(tmp_path / "r.csv", rows))]) == 2
    assert "line 5: AssignmentStatus 'rejected' is none of Submitted, Approved, Rejected" in capsys.readouterr().err
    assert read_db(root, "SELECT COUNT(*) FROM ratings") == [(0,)]


def test_export_runs_and_a_run_gone_from_the_results_folder(crowd, tmp_path, capsys):
    root = shutil.copytree(crowd, tmp_path / "copy")
    plan = load_plan(root)
    assert main(["annotate", "import", str(root), str(write_results_csv(tmp_path / "r.csv", mturk_results(root)))]) == 0
    per_run = {run: 3 * sum(1 for i in plan.items.values() if i.run == run) for run in RUNS}
    rows = export_rows(root, "--runs", "human,greedy")
    assert {r["run"] for r in rows} == {"human", "greedy"} and len(rows) == per_run["human"] + per_run["greedy"]
    shutil.rmtree(root / "greedy")  # a stale run: its generations are gone
    capsys.readouterr()
    rows = export_rows(root)
    assert {r["run"] for r in rows} == {"human", "top_k-k=40"}
    notes = [line for line in capsys.readouterr().err.splitlines() if "greedy" in line]
    assert len(notes) == 1 and notes[0].startswith("note: annotate export: run greedy")
    assert main(["annotate", "export", str(root), "--runs", "beam"]) == 2
    assert "--runs: beam is not a run of annotation/plan.json" in capsys.readouterr().err
