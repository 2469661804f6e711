"""Crowd studies nobody can game, against the real server (a subprocess on 127.0.0.1, a port it
picks itself): a Prolific study admits at most its places; crowd ratings count only once the
platform approved them (a Prolific submissions export approving some and rejecting one); a HIT
passes to someone else only after its holder stopped rating, never while they rate slowly, and
the holder is told; tokens are stored hashed; a failed COMMIT is rolled back; a store locked by
another process answers 503 after a short wait, not 30 s later."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3

import pytest

from annotation_helpers import Server, load_plan, read_db, write_db, write_results
from evalharness.annotation.crowd import completion_code, participant_name, study_token
from evalharness.cli import main

HOURS_3 = 3 * 3600
TABLES = ("annotators", "assignments", "handoffs", "ratings", "rating_history", "approvals")


def snapshot(root) -> tuple:
    return tuple(read_db(root, f"SELECT * FROM {table} ORDER BY 1") for table in TABLES)


def export(root, capsys, *options) -> tuple[list[dict], str]:
    """(rows of judgements.csv, what `annotate export` printed)."""
    capsys.readouterr()
    assert main(["annotate", "export", str(root), *options]) == 0
    with open(root / "judgements.csv", newline="") as handle:
        return list(csv.DictReader(handle)), capsys.readouterr().out


def prolific_export(path, rows: list[tuple[str, str, str]], code: str):
    """Prolific's submissions export (a subset of its columns) for (submission, participant, status)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Submission id", "Participant id", "Status", "Started at", "Completed at", "Time taken",
                     "Completion code", "Total approvals"])
    for submission, participant, status in rows:
        writer.writerow([submission, participant, status, "2026-12-05 10:00:00", "2026-12-05 10:20:00", "1200",
                         code if status == "APPROVED" else "", "12"])
    path.write_text(buffer.getvalue())
    return path


def rate_all(server: Server, token: str, value: int) -> dict:
    hit = server.hit(token)
    assert hit["hit_id"] is not None
    status, _, body = server.submit(token, hit["hit_id"], {item["item_id"]: value for item in hit["items"]})
    assert status == 200, body
    return hit


def test_invented_participants_get_at_most_the_places_and_count_only_once_approved(tmp_path, capsys):
    root = write_results(tmp_path / "results", ["human", "greedy"], prompts=3)
    server = Server(root, "--per-item", 3, "--hit-size", 3, "--annotators", 1)
    try:
        plan = load_plan(root)
        group = plan.groups[0]
        link = study_token(plan, group.group_id)
        answers = [server.join(link, f"p{n}") for n in range(10)]  # one person, ten invented ids
        admitted = {f"p{n}": body["token"] for n, (status, body) in enumerate(answers) if status == 200}
        assert len(admitted) == 3
        refused = [body["error"] for status, body in answers if status != 200]
        assert len(refused) == 7 and all(status in (200, 409) for status, _ in answers)
        assert all(error.startswith("study full: all 3 places") for error in refused)
        values = {"p0": 2, "p1": 5, "p2": 6}
        held = {name: rate_all(server, admitted[name], values[name])["hit_id"] for name in admitted}
        assert len(set(held.values())) == 3
        rows, said = export(root, capsys)
        assert rows == [] and f"note: {3 * len(group.item_ids)} crowd ratings awaiting approval left out" in said

        code = completion_code(plan, group.group_id)
        csv_path = prolific_export(tmp_path / "prolific.csv", [("S0", "p0", "APPROVED"), ("S1", "p1", "APPROVED"),
                                                               ("S2", "p2", "REJECTED"), ("S7", "p7", "RETURNED")], code)
        assert main(["annotate", "import", str(root), str(csv_path)]) == 0
        assert ("Prolific: 4 rows; 3 new, 0 changed status, 0 unchanged; 3 ratings withdrawn; 1 never opened the page"
                in capsys.readouterr().out)
        rows, said = export(root, capsys)
        names = {participant_name(plan, group.group_id, p): p for p in admitted}
        assert sorted((names[r["annotator"]], r["typicality"]) for r in rows) == sorted(
            [("p0", "2")] * len(group.item_ids) + [("p1", "5")] * len(group.item_ids))  # exactly the approved ones
        assert "awaiting approval" not in said

        assert server.get("/api/hit", admitted["p2"])[0] == 403  # the rejected participant is out...
        assert server.join(link, "p2")[0] == 403
        status, body = server.join(link, "p10")  # ...and their place is free again, with its HIT copy
        assert status == 200 and server.hit(body["token"])["hit_id"] == held["p2"]
        assert server.join(link, "p11")[0] == 409
        history = read_db(root, "SELECT COUNT(*) FROM rating_history WHERE annotator = ?",
                          (participant_name(plan, group.group_id, "p2"),))
        assert history == [(len(group.item_ids),)]  # withdrawn from the counted ratings, kept in the history

        reversed_csv = prolific_export(tmp_path / "again.csv", [("S2", "p2", "APPROVED")], code)
        assert main(["annotate", "import", str(root), str(reversed_csv)]) == 0  # too late: p10 holds that copy
        assert "1 approved after a withdrawal but not restored" in capsys.readouterr().out
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()


def test_a_slow_annotator_keeps_the_hit_and_an_idle_one_is_told_it_passed_on(tmp_path):
    root = write_results(tmp_path / "results", ["human"], prompts=4)
    server = Server(root, "--per-item", 2, "--hit-size", 2, "--annotators", 1)
    try:
        plan = load_plan(root)
        slow = server.links()["a01"]
        hit = server.hit(slow)
        group = hit_group = plan.hit_by_id[hit["hit_id"]].group_id
        first_item = hit["items"][0]["item_id"]
        assert server.submit(slow, hit["hit_id"], {first_item: 4})[0] == 200
        write_db(root, "UPDATE assignments SET claimed_at = claimed_at - ? WHERE hit_id = ?", (HOURS_3, hit["hit_id"]))
        link = study_token(plan, group)
        other_copy = server.join(link, "p1")[1]["token"]
        rate_all(server, other_copy, 3)  # the group's second copy, done
        waiting = server.join(link, "p2")[1]["token"]
        assert server.hit(waiting)["hit_id"] is None  # claimed 3 h ago, but rated a moment ago: kept

        write_db(root, "UPDATE assignments SET last_active_at = last_active_at - ? WHERE hit_id = ?",
                 (HOURS_3, hit["hit_id"]))
        assert server.hit(waiting)["hit_id"] == hit["hit_id"]  # 3 h without a rating: passed on
        status, _, body = server.submit(slow, hit["hit_id"], {hit["items"][1]["item_id"]: 5})
        assert status == 409 and "passed to another annotator after 120 minutes" in json.loads(body)["error"]
        following = server.hit(slow)  # the next HIT, of another group
        assert following["hit_id"] is not None and plan.hit_by_id[following["hit_id"]].group_id != hit_group
        rate_all(server, waiting, 6)
        counts = read_db(root, "SELECT item_id, COUNT(*) FROM ratings GROUP BY item_id")
        assert max(count for _, count in counts) == 2  # never more than --per-item current ratings
        assert read_db(root, "SELECT item_id, typicality FROM rating_history WHERE annotator = 'a01'") == [(first_item, 4)]
    finally:
        server.stop()


def test_tokens_are_stored_hashed_and_never_logged(tmp_path):
    root = write_results(tmp_path / "results", ["human"], prompts=2)
    server = Server(root, "--per-item", 1, "--hit-size", 2, "--annotators", 2)
    try:
        tokens = server.links()
        server.hit(tokens["a01"])
        server.get(f"/?token={tokens['a02']}")  # an old link
        server.get(f"/api/hit?token={tokens['a02']}")  # refused, and not logged either
        stored = dict(read_db(root, "SELECT annotator, token_hash FROM annotators"))
        assert stored == {name: hashlib.sha256(token.encode()).hexdigest() for name, token in tokens.items()}
        database = (root / "annotation" / "judgements.sqlite").read_bytes()
        assert not any(token.encode() in database for token in tokens.values())
        status, headers, _ = server.get(f"/?token={tokens['a02']}")
        assert status == 303 and headers["location"] == f"/#token={tokens['a02']}"
    finally:
        server.stop()
    after_start = server.log.read_text().split("serving on", 1)[1]  # the links are printed once, before
    assert not any(token in after_start for token in tokens.values())


def test_a_failed_commit_is_rolled_back_and_the_next_request_works(tmp_path):
    root = write_results(tmp_path / "results", ["human"], prompts=2)
    server = Server(root, "--per-item", 1, "--hit-size", 2, "--annotators", 1)
    try:
        token = server.links()["a01"]
        hit = server.hit(token)
        item = hit["items"][0]["item_id"]
        # Injected failure: a deferred foreign key that every rating violates, so COMMIT itself fails
        # (as on a full disk) and SQLite leaves the transaction open.
        write_db(root, "CREATE TABLE injected (who TEXT REFERENCES annotators (annotator) DEFERRABLE INITIALLY DEFERRED)")
        write_db(root, "CREATE TRIGGER fail_at_commit AFTER INSERT ON rating_history "
                       "BEGIN INSERT INTO injected VALUES ('nobody'); END")
        before = snapshot(root)
        status, headers, body = server.submit(token, hit["hit_id"], {item: 4})
        assert status == 500 and headers["content-type"] == "application/json" and "nothing was stored" in body.decode()
        assert snapshot(root) == before
        write_db(root, "DROP TRIGGER fail_at_commit")
        write_db(root, "DROP TABLE injected")
        assert server.submit(token, hit["hit_id"], {item: 4})[0] == 200  # the connection was not left in the transaction
        assert read_db(root, "SELECT typicality FROM ratings") == [(4,)]
        assert token not in server.log.read_text().split("serving on", 1)[1]
    finally:
        server.stop()


def test_a_store_locked_by_another_process_answers_503_at_once(tmp_path):
    root = write_results(tmp_path / "results", ["human"], prompts=2)
    server = Server(root, "--per-item", 1, "--hit-size", 2, "--annotators", 1)
    writer = sqlite3.connect(root / "annotation" / "judgements.sqlite", isolation_level=None, timeout=30)
    try:
        token = server.links()["a01"]
        hit = server.hit(token)
        writer.execute("BEGIN IMMEDIATE")  # another process (an `annotate import`) is writing
        status, headers, body = server.submit(token, hit["hit_id"], {hit["items"][0]["item_id"]: 2})
        assert status == 503 and headers["retry-after"] == "2" and "busy" in json.loads(body)["error"]
        writer.execute("ROLLBACK")
        assert server.submit(token, hit["hit_id"], {hit["items"][0]["item_id"]: 2})[0] == 200
    finally:
        writer.close()
        server.stop()


@pytest.mark.parametrize("participant", ["p1\n", "p1 ", "", "p" * 65, "p1;drop"])
def test_participant_ids_match_whole(participant):
    from evalharness.annotation.crowd import PARTICIPANT_ID

    assert PARTICIPANT_ID.fullmatch(participant) is None
    assert PARTICIPANT_ID.fullmatch("5f1c0ffee0123456789abcde")
