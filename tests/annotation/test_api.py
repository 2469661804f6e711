"""The JSON API of `annotate`, against the real server started in a subprocess (127.0.0.1,
a port it picks itself): the whole study for two annotators, Prolific participants, a table of
bad requests (each a JSON 4xx, nothing stored), tokens kept out of URLs, logs and the
database, a failed COMMIT rolled back, 200 submissions from 4 concurrent clients (each stored
exactly once), and SIGKILL + restart (every acknowledged rating kept). Each test asks for
the state it needs (fixtures), so any order works."""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import re
import threading
import time

import pytest

from annotation_helpers import INJECTED, Server, load_plan, read_db, request, text_of, write_db, write_results
from evalharness.annotation.crowd import completion_code, study_token
from evalharness.cli import main as cli_main

RUNS = ["human", "greedy", "top_p-p=0.9"]


def rule(run: str, prompt_id: str, annotator: str) -> int:
    """The simulated annotators' ratings: a function of what they rate, so a wrong mapping shows."""
    return 1 + (sum(map(ord, run)) + int(prompt_id) + len(annotator)) % 6


def decode(text: str) -> tuple[str, str]:
    """(run, prompt id) of a test text, read back from the text itself."""
    match = re.fullmatch(r"(.+) says: continuation number (\d+), written for the .+ run\.", text)
    return match.group(1), match.group(2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = write_results(tmp_path_factory.mktemp("api") / "results", RUNS, prompts=5)
    server = Server(root, "--per-item", 5, "--hit-size", 3, "--annotators", 3)
    yield server
    server.stop()


def security_headers_present(headers: dict) -> None:
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_the_page_is_static_with_a_strict_policy(study):
    status, headers, body = study.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    security_headers_present(headers)
    html = body.decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/annotate.js" defer>']
    assert not re.search(r"<[^>]*\s(on\w+|style)\s*=", html, re.IGNORECASE)  # no inline handlers or styles
    for path in ("/static/annotate.js", "/static/annotate.css"):
        assert study.get(path)[0] == 200
    js = study.get("/static/annotate.js")[2].decode()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


@pytest.fixture(scope="module")
def rated(study):
    """a01 and a02 have rated the whole study, HIT by HIT. -> the HITs each got, in order."""
    links = study.links()
    seen = {name: [] for name in ("a01", "a02")}
    for _ in range(20):  # bounded: 6 HITs each
        progressed = False
        for name in seen:
            hit = study.hit(links[name])
            if hit["hit_id"] is None:
                continue
            check_hit(hit, len(seen[name]))
            ratings = {item["item_id"]: rule(*decode(item["text"]), name) for item in hit["items"]}
            status, headers, body = study.submit(links[name], hit["hit_id"], ratings)
            assert status == 200 and json.loads(body) == {"saved": len(ratings)}
            security_headers_present(headers)
            seen[name].append(hit)
            progressed = True
        if not progressed:
            break
    return seen


def test_two_annotators_rate_the_whole_study(study, rated):
    links, seen = study.links(), rated
    plan = load_plan(study.root)
    for name, hits in seen.items():
        assert len(hits) == len(plan.groups) == 6
        assert len({h["hit_id"] for h in hits}) == 6
        rated = [i["item_id"] for h in hits for i in h["items"]]
        assert sorted(rated) == sorted(plan.items)  # every text once, none twice
        final = study.hit(links[name])
        assert final["hit_id"] is None and final["done"] == final["total"] == 6
    assert not {h["hit_id"] for h in seen["a01"]} & {h["hit_id"] for h in seen["a02"]}
    counts = read_db(study.root, "SELECT item_id, COUNT(*) FROM ratings WHERE annotator IN ('a01', 'a02') "
                                 "GROUP BY item_id")  # others may rate in other tests
    assert len(counts) == 15 and {c for _, c in counts} == {2}


def check_hit(hit: dict, done: int) -> None:
    assert set(hit) == {"hit_id", "items", "scale", "done", "total"}
    assert hit["done"] == done and hit["total"] == 6
    assert [s["label"] for s in hit["scale"]] == ["Invalid", "Rare", "Specific", "Average", "Typical", "Very typical"]
    assert 1 <= len(hit["items"]) <= 3
    assert len({decode(item["text"])[0] for item in hit["items"]}) == 1  # one run per HIT
    for item in hit["items"]:
        assert set(item) == {"item_id", "text", "typicality"} and item["typicality"] is None
        assert re.fullmatch(r"[0-9a-f]{20}", item["item_id"])  # opaque: no run, no prompt id
    assert re.fullmatch(r"[0-9a-f]{16}", hit["hit_id"])


def test_resubmitting_replaces_the_rating_and_keeps_the_history(study, rated):
    token = study.links()["a01"]
    hit_id = read_db(study.root, "SELECT hit_id FROM assignments WHERE annotator = 'a01' ORDER BY rowid LIMIT 1")[0][0]
    item_id = load_plan(study.root).hit_by_id[hit_id].item_ids[0]
    before = read_db(study.root, "SELECT typicality FROM ratings WHERE annotator = 'a01' AND item_id = ?", (item_id,))[0][0]
    changed = before % 6 + 1
    assert study.submit(token, hit_id, {item_id: changed})[0] == 200
    assert read_db(study.root, "SELECT typicality FROM ratings WHERE annotator = 'a01' AND item_id = ?",
                   (item_id,)) == [(changed,)]
    history = read_db(study.root, "SELECT typicality FROM rating_history WHERE annotator = 'a01' AND item_id = ? "
                                  "ORDER BY id", (item_id,))
    assert history == [(before,), (changed,)]
    assert study.submit(token, hit_id, {item_id: before})[0] == 200  # back, for the export test


def test_export_writes_the_huse_contract(study, rated, tmp_path):
    output = tmp_path / "judgements.csv"
    assert cli_main(["annotate", "export", str(study.root), "--output", str(output)]) == 0
    with open(output, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["run", "prompt_id", "annotator", "typicality"]
    body = [row for row in rows[1:] if row[2] in ("a01", "a02")]  # others may have rated in other tests
    assert len(body) == 2 * 15 and len({(r[0], r[1], r[2]) for r in body}) == 30
    assert not [row for row in rows[1:] if not row[2].startswith("a0")]  # no unapproved Prolific rating
    for run, prompt_id, annotator, typicality in body:
        assert int(typicality) == rule(run, prompt_id, annotator)


def bad_requests(token: str, hit_id: str, item_id: str, foreign_item: str, foreign_hit: str, second_item: str):
    """(name, method, path, body, status, headers) of requests that must each be refused."""
    def body(**changes):
        data = {"hit_id": hit_id, "ratings": [{"item_id": item_id, "typicality": 4}]}
        data.update(changes)
        return data

    def raw(text: str) -> bytes:  # JSON text as sent, escapes and all
        return text.replace("HIT", hit_id).replace("ITEM", item_id).encode()

    def rating(typicality, item=item_id):
        return body(ratings=[{"item_id": item, "typicality": typicality}])

    cases = [
        ("malformed JSON", "POST", "/api/ratings", b'{"hit_id": ', 400),
        ("JSON but not an object", "POST", "/api/ratings", b"[1, 2]", 400),
        ("not sent as JSON", "POST", "/api/ratings", (json.dumps(body()).encode(), "text/plain"), 415),
        ("nested 20000 deep (RecursionError)", "POST", "/api/ratings", b"[" * 20_000 + b"]" * 20_000, 400),
        ("nested deep inside the ratings", "POST", "/api/ratings",
         raw('{"hit_id": "HIT", "ratings": ' + "[" * 20_000 + "]" * 20_000 + "}"), 400),
        ("a lone surrogate in hit_id", "POST", "/api/ratings",
         raw('{"hit_id": "\\ud800", "ratings": [{"item_id": "ITEM", "typicality": 4}]}'), 400),
        ("a lone surrogate in item_id", "POST", "/api/ratings",
         raw('{"hit_id": "HIT", "ratings": [{"item_id": "\\udfff", "typicality": 4}]}'), 400),
        ("invalid UTF-8 in the body", "POST", "/api/ratings", b'{"hit_id": "\xff\xfe"}', 400),
        ("NaN as typicality", "POST", "/api/ratings",
         raw('{"hit_id": "HIT", "ratings": [{"item_id": "ITEM", "typicality": NaN}]}'), 400),
        ("a 400-digit typicality", "POST", "/api/ratings",
         raw('{"hit_id": "HIT", "ratings": [{"item_id": "ITEM", "typicality": 1' + "0" * 400 + "}]}"), 400),
        ("unknown token", "POST", "/api/ratings", body(), 403, {"Authorization": "Bearer " + "x" * 32}),
        ("token missing", "POST", "/api/ratings", body(), 401, {}),
        ("a token key in the body (the header only)", "POST", "/api/ratings", body(token=token), 400),
        ("token with a lone surrogate's bytes", "POST", "/api/ratings", body(), 403,
         {"Authorization": b"Bearer \xed\xa0\x80"}),
        ("token of another scheme", "POST", "/api/ratings", body(), 403, {"Authorization": "Basic " + token}),
        ("typicality 0", "POST", "/api/ratings", rating(0), 400),
        ("typicality 7", "POST", "/api/ratings", rating(7), 400),
        ("typicality as a string", "POST", "/api/ratings", rating("4"), 400),
        ("typicality 4.0", "POST", "/api/ratings", rating(4.0), 400),
        ("typicality true", "POST", "/api/ratings", rating(True), 400),
        ("typicality missing", "POST", "/api/ratings", body(ratings=[{"item_id": item_id}]), 400),
        ("item of another HIT", "POST", "/api/ratings", rating(4, foreign_item), 400),
        ("HIT of another annotator", "POST", "/api/ratings", body(hit_id=foreign_hit), 400),
        ("unknown HIT", "POST", "/api/ratings", body(hit_id="0" * 16), 400),
        ("hit_id a number", "POST", "/api/ratings", body(hit_id=7), 400),
        ("an item twice", "POST", "/api/ratings", body(ratings=[{"item_id": item_id, "typicality": 4}] * 2), 400),
        ("no ratings", "POST", "/api/ratings", body(ratings=[]), 400),
        ("one good rating, one out of range", "POST", "/api/ratings",
         body(ratings=[{"item_id": item_id, "typicality": 4}, {"item_id": second_item, "typicality": 9}]), 400),
        ("one good rating, one foreign item", "POST", "/api/ratings",
         body(ratings=[{"item_id": item_id, "typicality": 4}, {"item_id": foreign_item, "typicality": 4}]), 400),
        ("an unknown key", "POST", "/api/ratings", body(run="greedy"), 400),
        ("a body over the limit", "POST", "/api/ratings", body(padding="x" * 70_000), 413),
        ("hit without token", "GET", "/api/hit", None, 401, {}),
        ("hit with an unknown token", "GET", "/api/hit", None, 403, {"Authorization": "Bearer nope"}),
        ("hit with the token in the URL", "GET", f"/api/hit?token={token}", None, 400, {}),
        ("GET on the ratings endpoint", "GET", "/api/ratings", None, 405),
        ("a path out of static/", "GET", "/static/../annotation/plan.json", None, 404),
        ("a file of the results folder", "GET", "/annotation/judgements.sqlite", None, 404),
        ("a Prolific study that does not exist", "POST", "/api/prolific", {"study": "0" * 32, "participant": "p1"}, 403),
        ("a participant id with a trailing newline", "POST", "/api/prolific",
         {"study": "0" * 32, "participant": "p1\n"}, 400),
        ("a lone surrogate as the study", "POST", "/api/prolific",
         b'{"study": "\\ud800", "participant": "p1"}', 400),
        ("a participant that is a list", "POST", "/api/prolific", {"study": "0" * 32, "participant": ["p1"]}, 400),
    ]
    with_token = {"Authorization": f"Bearer {token}"}
    return [case if len(case) == 6 else (*case, with_token) for case in cases]


def snapshot(root) -> tuple:
    return tuple(read_db(root, f"SELECT * FROM {table} ORDER BY 1") for table in
                 ("annotators", "assignments", "handoffs", "ratings", "rating_history", "approvals"))


def test_bad_requests_are_refused_and_store_nothing(study, rated):
    token = study.links()["a03"]
    hit = study.hit(token)
    plan = load_plan(study.root)
    own = plan.hit_by_id[hit["hit_id"]]
    foreign_hit = read_db(study.root, "SELECT hit_id FROM assignments WHERE annotator = 'a01' LIMIT 1")[0][0]
    foreign_item = next(i for i in plan.items if i not in own.item_ids)
    cases = bad_requests(token, own.hit_id, own.item_ids[0], foreign_item, foreign_hit, own.item_ids[-1])
    assert len(cases) >= 40 and len(own.item_ids) >= 2
    before = snapshot(study.root)
    for name, method, path, body, expected, auth in cases:
        content = "application/json"
        if isinstance(body, tuple):
            body, content = body
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        status, headers, payload = request(study.port, method, path, data,
                                           {**auth, **({"Content-Type": content} if data is not None else {})})
        assert status == expected, (name, status, payload)
        assert headers["content-type"] == "application/json" and "error" in json.loads(payload), name
        security_headers_present(headers)
        assert snapshot(study.root) == before, f"{name}: something was stored"
    assert study.submit(token, own.hit_id, {own.item_ids[0]: 4})[0] == 200  # the same token still works
    assert "Traceback" not in study.log.read_text()  # every one refused on purpose, none by accident


def test_prolific_participants_get_their_study_and_a_completion_code(study, rated):
    plan = load_plan(study.root)
    group = plan.groups[0]
    join = {"study": study_token(plan, group.group_id), "participant": "5f1c0ffee0123456789abcde"}
    status, _, body = study.post("/api/prolific", join)
    assert status == 200
    token = json.loads(body)["token"]
    assert study.post("/api/prolific", join)[2] == body  # the same participant keeps one token
    hit = study.hit(token)
    assert plan.hit_by_id[hit["hit_id"]].group_id == group.group_id and hit["total"] == 1
    ratings = {item["item_id"]: 3 for item in hit["items"]}
    assert study.submit(token, hit["hit_id"], ratings)[0] == 200
    done = study.hit(token)
    assert done["hit_id"] is None and done["done"] == 1
    assert done["completion_code"] == completion_code(plan, group.group_id)
    assert done["completion_url"].endswith("cc=" + done["completion_code"])
    assert study.post("/api/prolific", {**join, "participant": "<script>"})[0] == 400
    names = [row[0] for row in read_db(study.root, "SELECT annotator FROM annotators WHERE kind = 'prolific'")]
    assert names and all("5f1c0ffee" not in name for name in names)  # stored under a pseudonym


# --- concurrency and crashes -----------------------------------------------------------------

def rate_one_by_one(server: Server, token: str, count: int, acknowledged: list, errors: list) -> None:
    """Submit `count` single ratings (one request each); record each acknowledged one."""
    try:
        while count > 0:
            hit = server.hit(token)
            if hit["hit_id"] is None:
                errors.append(f"{token[:6]}: ran out of HITs with {count} to go")
                return
            for item in hit["items"][:count]:
                value = rule(*decode(item["text"]), "x")
                status, _, body = server.submit(token, hit["hit_id"], {item["item_id"]: value})
                if status != 200 or json.loads(body) != {"saved": 1}:
                    errors.append(f"{status} {body!r}")
                    return
                acknowledged.append((token, item["item_id"], value))
                count -= 1
    except (OSError, http.client.HTTPException) as exc:  # the server was killed under us
        errors.append(f"connection: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        errors.append(f"client: {exc!r}")


def test_200_submissions_from_4_concurrent_clients_are_stored_exactly_once(tmp_path):
    root = write_results(tmp_path / "results", ["human", "greedy", "top_p-p=0.9", "pure"], prompts=15)
    server = Server(root, "--per-item", 4, "--hit-size", 15, "--annotators", 4)
    try:
        tokens = list(server.links().values())
        acknowledged, errors = [], []
        threads = [threading.Thread(target=rate_one_by_one, args=(server, t, 50, acknowledged, errors)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        assert not any(t.is_alive() for t in threads) and errors == []
    finally:
        server.stop()
    by_token = {token: name for name, token in server.links().items()}
    expected = sorted((by_token[t], item, value) for t, item, value in acknowledged)
    assert len(expected) == 200 and len(set(expected)) == 200
    assert sorted(read_db(root, "SELECT annotator, item_id, typicality FROM ratings")) == expected
    assert sorted(read_db(root, "SELECT annotator, item_id, typicality FROM rating_history")) == expected
    groups = read_db(root, "SELECT annotator, group_id, COUNT(*) FROM assignments GROUP BY 1, 2")
    assert {count for _, _, count in groups} == {1}  # nobody got a group twice


def test_sigkill_loses_no_acknowledged_rating(tmp_path):
    root = write_results(tmp_path / "results", ["human", "greedy"], prompts=60)
    server = Server(root, "--per-item", 2, "--hit-size", 30, "--annotators", 2)
    acknowledged, errors = [], []
    tokens = list(server.links().values())
    threads = [threading.Thread(target=rate_one_by_one, args=(server, t, 10_000, acknowledged, errors)) for t in tokens]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # SIGKILL, mid-stream: both clients are still submitting
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.kill()
    assert len(acknowledged) >= 30 and errors and all(e.startswith("connection") for e in errors)
    restarted = Server(root)
    try:
        by_token = {token: name for name, token in restarted.links().items()}
        stored = set(read_db(root, "SELECT annotator, item_id, typicality FROM ratings"))
        assert {(by_token[t], item, value) for t, item, value in acknowledged} <= stored
        hit = restarted.hit(tokens[0])  # resumes the HIT it was in, with the saved ratings filled in
        saved = {(item["item_id"], item["typicality"]) for item in hit["items"] if item["typicality"]}
        acked_here = {(i, v) for t, i, v in acknowledged if t == tokens[0] and i in {x["item_id"] for x in hit["items"]}}
        assert acked_here <= saved and len(saved - acked_here) <= 1  # at most the one in flight at the kill
        assert restarted.submit(tokens[0], hit["hit_id"], {hit["items"][-1]["item_id"]: 2})[0] == 200
    finally:
        restarted.stop()


def test_the_rule_is_not_constant():
    """The checks above would pass vacuously if every rating were the same."""
    assert len({rule(run, f"{i:05d}", "a01") for run in RUNS for i in range(5)}) == 6
    assert INJECTED and text_of("human", "00001") != text_of("greedy", "00001")
