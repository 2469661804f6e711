"""The study plan, the store's rules and the `annotate` command line, in process."""

from __future__ import annotations

import re
import socket
from collections import Counter

import pytest

from annotation_helpers import write_results
from evalharness.annotation.plan import PlanOptions, build_plan, ensure_plan, load_plan, split_evenly
from evalharness.annotation.store import HOLD_SECONDS, JudgementStore, Rejected
from evalharness.cli import main
from evalharness.errors import UserError

RUNS = ["human", "greedy", "pure"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return write_results(tmp_path_factory.mktemp("plan") / "results", RUNS, prompts=26)


def structure(plan) -> tuple:
    """The plan without its secret ids: groups and HITs as (run, prompt id) sequences."""
    name = {item_id: (item.run, item.prompt_id) for item_id, item in plan.items.items()}
    groups = [tuple(name[i] for i in g.item_ids) for g in plan.groups]
    hits = [(hit.replica, tuple(name[i] for i in hit.item_ids)) for hit in plan.hits]
    return groups, hits


def test_split_evenly_makes_near_equal_groups():
    ids = [str(i) for i in range(26)]
    assert [len(c) for c in split_evenly(ids, 25)] == [13, 13]
    assert [len(c) for c in split_evenly(ids[:3], 25)] == [3]
    assert [len(c) for c in split_evenly(ids[:25], 5)] == [5] * 5
    assert sorted(len(c) for c in split_evenly(ids, 4)) == [3, 3, 4, 4, 4, 4, 4]
    assert sum(split_evenly(ids, 7), []) == ids


def test_plan_shape(results):
    options = PlanOptions(runs=tuple(RUNS), per_item=3, hit_size=10, seed=1)
    plan = build_plan(results, options)
    assert len(plan.items) == 3 * 26
    assert len(plan.groups) == 3 * 3  # 26 texts per run -> 9, 9, 8
    for group in plan.groups:
        assert {plan.items[i].run for i in group.item_ids} == {group.run}  # one run per HIT
        assert len(group.item_ids) in (8, 9)
    assert Counter(i for g in plan.groups for i in g.item_ids) == Counter(dict.fromkeys(plan.items, 1))
    assert len(plan.hits) == 9 * 3
    assert [hit.replica for hit in plan.hits] == [r for r in range(3) for _ in range(9)]  # copy r before r+1
    for hit in plan.hits:
        assert sorted(hit.item_ids) == sorted(plan.group_by_id[hit.group_id].item_ids)
    copies = Counter(hit.group_id for hit in plan.hits)
    assert set(copies.values()) == {3}
    assert len({hit.item_ids for hit in plan.hits}) > 9  # copies are shown in their own orders


def test_ids_are_opaque_and_the_structure_follows_the_seed(results, tmp_path):
    options = PlanOptions(runs=tuple(RUNS), per_item=2, hit_size=7, seed=5)
    first, second = build_plan(results, options), build_plan(results, options)
    assert structure(first) == structure(second)
    assert structure(build_plan(results, PlanOptions(runs=tuple(RUNS), per_item=2, hit_size=7, seed=6))) != structure(first)
    assert not set(first.items) & set(second.items)  # a fresh key: ids cannot be recomputed from the seed
    for item_id, item in first.items.items():
        assert re.fullmatch(r"[0-9a-f]{20}", item_id)
    for hit in first.hits:
        assert re.fullmatch(r"[0-9a-f]{16}", hit.hit_id) and re.fullmatch(r"[0-9a-f]{16}", hit.group_id)


def test_a_stored_plan_is_continued_and_guarded(results, tmp_path):
    root = write_results(tmp_path / "r", RUNS, prompts=4)
    plan, created = ensure_plan(root, {"per_item": 2, "hit_size": 3, "runs": None, "with_context": None, "seed": None})
    assert created and plan.options.runs == tuple(RUNS) and plan.options.seed == 0
    again, created = ensure_plan(root, {"per_item": None, "hit_size": 3, "runs": None, "with_context": None, "seed": None})
    assert not created and again.key == plan.key and structure(again) == structure(plan)
    with pytest.raises(UserError, match=r"--per-item: .* was made with 2, not 5"):
        ensure_plan(root, {"per_item": 5, "hit_size": None, "runs": None, "with_context": None, "seed": None})
    assert (root / "annotation" / ".gitignore").read_text().strip().endswith("*")
    assert oct((root / "annotation" / "plan.json").stat().st_mode)[-3:] == "600"


@pytest.mark.parametrize("options, message", [
    ({"runs": ["greedy", "nope"]}, r"--runs: no generations for nope"),
    ({"per_item": 0}, r"--per-item: must be"),
    ({"hit_size": 0}, r"--hit-size: must be"),
    ({"hit_size": 201}, r"--hit-size: must be"),
    ({"runs": ["greedy", "greedy"]}, r"--runs: a run is named twice"),
    ({"prompts": 0}, r"--prompts: must be"),
])
def test_bad_plan_options_are_user_errors(tmp_path, options, message):
    root = write_results(tmp_path / "r", RUNS, prompts=2)
    requested = {"runs": None, "per_item": None, "hit_size": None, "with_context": None, "seed": None, **options}
    with pytest.raises(UserError, match=message):
        ensure_plan(root, requested)
    assert not (root / "annotation" / "plan.json").exists()


def test_prompts_samples_the_same_prompts_in_every_run(results):
    plan = build_plan(results, PlanOptions(runs=tuple(RUNS), prompts=5, per_item=1, hit_size=25, seed=3))
    per_run = {run: sorted(i.prompt_id for i in plan.items.values() if i.run == run) for run in RUNS}
    assert len(per_run["human"]) == 5 and per_run["human"] == per_run["greedy"] == per_run["pure"]
    other = build_plan(results, PlanOptions(runs=tuple(RUNS), prompts=5, per_item=1, hit_size=25, seed=4))
    assert sorted(i.prompt_id for i in other.items.values() if i.run == "human") != per_run["human"]


def test_with_context_shows_the_context(tmp_path):
    root = write_results(tmp_path / "r", ["human"], prompts=3)
    plan, _ = ensure_plan(root, {"runs": ["human"], "per_item": 1, "hit_size": 5, "with_context": True, "seed": None})
    assert {item.context for item in plan.items.values()} == {f"The context of prompt {i}" for i in range(3)}


# --- store -----------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    root = write_results(tmp_path / "r", RUNS, prompts=6)
    plan, _ = ensure_plan(root, {"runs": None, "per_item": 2, "hit_size": 3, "with_context": None, "seed": None})
    opened = JudgementStore(root, plan)
    yield opened
    opened.close()


def test_links_are_kept_and_added(store):
    two = store.ensure_lab_annotators(2)
    four = store.ensure_lab_annotators(4)
    assert four[:2] == two and [name for name, _ in four] == ["a01", "a02", "a03", "a04"]
    assert store.ensure_lab_annotators(1) == four
    assert all(len(token) >= 32 for _, token in four) and len({t for _, t in four}) == 4


def test_tokens_authenticate_exactly(store):
    (name, token), = store.ensure_lab_annotators(1)
    assert store.authenticate(token).name == name
    for wrong in (token[:-1], token + "x", token.upper() if token.upper() != token else token.lower(), "", None, 7):
        assert store.authenticate(wrong) is None


def test_an_annotator_never_gets_a_group_twice(store):
    store.ensure_lab_annotators(1)
    annotator = store.authenticate(store.lab_annotators()[0][1])
    groups = []
    for _ in range(20):
        hit = store.current_or_next_hit(annotator)
        if hit is None:
            break
        assert store.current_or_next_hit(annotator) == hit  # held until done: resume
        store.submit(annotator, hit.hit_id, [(item_id, 4) for item_id in hit.item_ids])
        groups.append(hit.group_id)
    assert sorted(groups) == sorted(g.group_id for g in store.plan.groups)
    assert store.progress(annotator) == (len(store.plan.groups), len(store.plan.groups))


def test_a_hit_abandoned_for_hours_passes_to_someone_waiting(tmp_path):
    root = write_results(tmp_path / "r", ["human"], prompts=4)
    plan, _ = ensure_plan(root, {"runs": None, "per_item": 1, "hit_size": 2, "with_context": None, "seed": None})
    store = JudgementStore(root, plan)
    try:
        first, second = (store.authenticate(token) for _, token in store.ensure_lab_annotators(2))
        held = store.current_or_next_hit(first)
        other = store.current_or_next_hit(second)
        store.submit(second, other.hit_id, [(item_id, 3) for item_id in other.item_ids])
        store.submit(first, held.hit_id, [(held.item_ids[0], 6)])  # half done, then gone
        assert store.current_or_next_hit(second) is None  # reserved while recent
        store.db.execute("UPDATE assignments SET claimed_at = claimed_at - ? WHERE hit_id = ?",
                         (HOLD_SECONDS + 1, held.hit_id))
        assert store.current_or_next_hit(second) is None  # claimed long ago, but rated a moment ago
        store.db.execute("UPDATE assignments SET last_active_at = last_active_at - ? WHERE hit_id = ?",
                         (HOLD_SECONDS + 1, held.hit_id))
        assert store.current_or_next_hit(second) == held
        with pytest.raises(Rejected, match="passed to another annotator") as lost:
            store.submit(first, held.hit_id, [(held.item_ids[1], 2)])
        assert lost.value.status == 409
        assert store.ratings_of(first, held.item_ids) == {}  # withdrawn: never more than per_item current ratings
        history = store.db.execute("SELECT item_id, typicality FROM rating_history WHERE annotator = ?",
                                   (first.name,)).fetchall()
        assert history == [(held.item_ids[0], 6)]  # ...and kept in the history
    finally:
        store.close()


def test_a_store_of_the_earlier_layout_is_a_user_error(tmp_path):
    """Tokens were stored in clear before; such a store is refused with one line, not migrated."""
    import sqlite3

    root = write_results(tmp_path / "r", RUNS, prompts=2)
    plan, _ = ensure_plan(root, {"runs": None, "per_item": 1, "hit_size": 2, "with_context": None, "seed": None})
    old = sqlite3.connect(root / "annotation" / "judgements.sqlite")
    old.execute("CREATE TABLE annotators (annotator TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE)")
    old.close()
    with pytest.raises(UserError, match=r"judgements.sqlite: written by an earlier evalharness \(store version 0"):
        JudgementStore(root, plan)


def test_a_failing_submission_stores_nothing(store, monkeypatch):
    store.ensure_lab_annotators(1)
    annotator = store.authenticate(store.lab_annotators()[0][1])
    hit = store.current_or_next_hit(annotator)
    original = JudgementStore.write_ratings

    def write_then_fail(db, name, ratings, source):
        original(db, name, ratings[:1], source)  # the first rating is written inside the transaction...
        raise OSError("disk full")  # ...then the write fails

    monkeypatch.setattr(JudgementStore, "write_ratings", staticmethod(write_then_fail))
    with pytest.raises(OSError):
        store.submit(annotator, hit.hit_id, [(item_id, 5) for item_id in hit.item_ids])
    assert store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
    assert store.db.execute("SELECT COUNT(*) FROM rating_history").fetchone()[0] == 0
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- command line ----------------------------------------------------------------------------

def test_help_documents_both_forms(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["annotate", "--help"])
    assert exit_status.value.code == 0
    text = capsys.readouterr().out
    for form in ("annotate RESULTS_DIR [--runs", "--prompts", "annotate export RESULTS_DIR", "annotate mturk RESULTS_DIR",
                 "annotate import RESULTS_DIR RESULTS_CSV", "--per-item", "--include-pending", "--hold-minutes", "--hit-size", "--with-context",
                 "--annotators", "--host", "--port", "--seed"):
        assert form in text, form


@pytest.mark.parametrize("argv, message", [
    (["export", "{root}", "--port", "9"], "--port: does not apply to `annotate export`"),
    (["import", "{root}"], "annotate import: expected RESULTS_DIR RESULTS_CSV"),
    (["export", "{root}"], "no study planned here yet"),
    (["import", "{root}", "{root}/nothing.csv"], "no such file"),
    (["{root}/missing"], "no such results folder"),
    (["{root}", "--runs", "nope"], "--runs: no generations for nope"),
    (["{root}", "--annotators", "0"], "--annotators: must be an integer >= 1"),
    (["{root}", "--hold-minutes", "0"], "--hold-minutes: must be a number of minutes > 0"),
    (["export", "{root}", "--hold-minutes", "5"], "--hold-minutes: does not apply to `annotate export`"),
    (["mturk", "{root}", "--include-pending"], "--include-pending: does not apply to `annotate mturk`"),
    (["mturk", "{root}", "--public-url", "ftp://x"], "--public-url: must start with http"),
])
def test_command_line_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, message):
    root = write_results(tmp_path / "r", RUNS, prompts=2)
    assert main(["annotate", *[a.format(root=root) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_busy_port_is_a_user_error(tmp_path, capsys):
    root = write_results(tmp_path / "r", RUNS, prompts=2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["annotate", str(root), "--port", str(port)]) == 2
    assert f"--port {port}: cannot listen" in capsys.readouterr().err


def test_a_public_host_warns(tmp_path, capsys, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append((self.config, sockets)))
    bound = []

    def loopback_instead(host, port):  # the test listens on loopback only
        bound.append((host, port))
        return socket.create_server(("127.0.0.1", 0))

    monkeypatch.setattr("evalharness.annotation.app.listen", loopback_instead)
    root = write_results(tmp_path / "r", RUNS, prompts=2)
    assert main(["annotate", str(root), "--host", "0.0.0.0", "--port", "8123", "--annotators", "2",
                 "--public-url", "https://rate.example.org/study/"]) == 0
    out = capsys.readouterr()
    assert "reachable from the network" in out.err
    assert bound == [("0.0.0.0", 8123)] and served[0][0].access_log is False and len(served[0][1]) == 1
    assert "https://rate.example.org/study/#token=" in out.out
    assert load_plan(root) is not None
