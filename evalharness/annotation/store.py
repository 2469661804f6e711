"""annotation/judgements.sqlite: annotators, the HITs they hold, their ratings, every earlier
version of each rating, and what the crowd platforms said about each participant's work.

SQLite in WAL mode with synchronous=FULL: a submission is one transaction, committed (and
synced) before the server answers, so killing the server at any moment loses nothing it has
acknowledged, and a failed submission stores nothing (a failed COMMIT is rolled back, so the
connection is usable for the next request). Ratings are unique per (annotator, item): a
resubmission replaces the current rating and the old one stays in rating_history.

Tokens are stored as their SHA-256 (indexed, looked up directly): the database never holds
a token. Lab links and Prolific participants' tokens are derived from the plan's key
(plan.derived), so links can be printed again and a participant who joins twice keeps one token.

The approval gate: a crowd participant's ratings count only once the platform approved the
work (table approvals, filled by `annotate import`). Rejected, returned or timed-out work is
withdrawn: its current ratings leave `ratings` (rating_history keeps them) and its HIT copy
is free again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from evalharness.annotation.plan import Hit, Plan, annotation_dir
from evalharness.errors import UserError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS annotators (
    annotator    TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,  -- SHA-256 of the token, hex; the token itself is never stored
    kind         TEXT NOT NULL CHECK (kind IN ('lab', 'prolific', 'mturk')),
    group_only   TEXT,                  -- a Prolific participant may take only the HIT of their study
    created_at   REAL NOT NULL,
    withdrawn_at REAL                   -- their work was rejected / returned / timed out
);
CREATE TABLE IF NOT EXISTS assignments (
    hit_id         TEXT PRIMARY KEY,    -- each copy of a group goes to one annotator
    group_id       TEXT NOT NULL,
    annotator      TEXT NOT NULL REFERENCES annotators (annotator),
    claimed_at     REAL NOT NULL,
    last_active_at REAL NOT NULL,       -- the claim or the holder's latest rating: hand-off timer
    completed_at   REAL,
    UNIQUE (annotator, group_id)        -- nobody gets two copies of a group: no text rated twice
);
CREATE TABLE IF NOT EXISTS handoffs (   -- HITs that passed from an idle holder to someone else
    hit_id     TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    annotator  TEXT NOT NULL,           -- the holder who lost it
    at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    annotator   TEXT NOT NULL REFERENCES annotators (annotator),
    item_id     TEXT NOT NULL,
    typicality  INTEGER NOT NULL CHECK (typicality BETWEEN 1 AND 6),
    source      TEXT NOT NULL,          -- web:<hit id> or mturk:<assignment id>
    updated_at  REAL NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
CREATE INDEX IF NOT EXISTS ratings_by_item ON ratings (item_id);
CREATE TABLE IF NOT EXISTS rating_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    typicality  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (  -- what MTurk / Prolific said about one participant's HIT
    submission      TEXT PRIMARY KEY,   -- mturk:<AssignmentId> or prolific:<Submission id>
    annotator       TEXT NOT NULL REFERENCES annotators (annotator),
    group_id        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'withdrawn')),
    platform_status TEXT NOT NULL,      -- the platform's own word (Approved, RETURNED, ...)
    hit_id          TEXT,               -- the HIT copy a withdrawn web participant held
    updated_at      REAL NOT NULL,
    UNIQUE (annotator, group_id)
);
"""

HOLD_SECONDS = 2 * 3600
"""How long an unfinished HIT stays with its holder after their latest rating (or the claim)."""
SERVER_BUSY_SECONDS = 2.0
"""The server's wait for another writer (`annotate import`): short, answered 503 when exceeded."""
COMMAND_BUSY_SECONDS = 30.0
COUNTED, PENDING, WITHDRAWN = "approved", "pending", "withdrawn"


class Rejected(Exception):
    """A submission that must not be stored; the message is shown to the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Annotator:
    name: str
    kind: str
    group_only: str | None


def store_path(root: Path) -> Path:
    return Path(root) / "annotation" / "judgements.sqlite"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class JudgementStore:
    """One connection, used by one thread at a time (self.lock: the server calls it from worker
    threads, off its event loop). SQLite serialises writers across processes, e.g. an
    `annotate import` while serving; `busy_seconds` bounds the wait for the other one."""

    def __init__(self, root: Path, plan: Plan, busy_seconds: float = COMMAND_BUSY_SECONDS,
                 hold_seconds: float = HOLD_SECONDS) -> None:
        annotation_dir(root)
        path = store_path(root)
        fresh = not path.exists()
        self.plan, self.hold_seconds = plan, hold_seconds
        self.lock = threading.RLock()
        self.group_of_item = {item_id: g.group_id for g in plan.groups for item_id in g.item_ids}
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_seconds)
        if fresh:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.check_version(path)
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def check_version(self, path: Path) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        tables = self.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'annotators'").fetchone()[0]
        if tables and version != SCHEMA_VERSION:
            self.db.close()
            raise UserError(f"{path}: written by {'an earlier' if version < SCHEMA_VERSION else 'a later'} evalharness "
                            f"(store version {version}, this one reads {SCHEMA_VERSION}); export it with that "
                            "version, then move it away to start afresh")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception, a failed COMMIT included
        (SQLite leaves the transaction open when COMMIT fails, e.g. on a full disk)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    # -- annotators --
    def token_of(self, name: str) -> str:
        """The personal token of a lab annotator or Prolific participant (derived, not stored)."""
        return self.plan.derived("token", name, 32)

    def add_annotator(self, db: sqlite3.Connection, name: str, kind: str, group_only: str | None = None) -> None:
        token = self.token_of(name) if kind != "mturk" else secrets.token_urlsafe(24)  # MTurk: never used
        db.execute("INSERT INTO annotators VALUES (?, ?, ?, ?, ?, NULL)",
                   (name, token_hash(token), kind, group_only, time.time()))

    def lab_annotators(self) -> list[tuple[str, str]]:
        """(name, token) of the personal-link annotators, in creation order."""
        with self.lock:
            names = self.db.execute("SELECT annotator FROM annotators WHERE kind = 'lab' "
                                    "ORDER BY created_at, annotator").fetchall()
        return [(name, self.token_of(name)) for (name,) in names]

    def ensure_lab_annotators(self, count: int) -> list[tuple[str, str]]:
        """At least `count` personal links; existing ones are kept (more can be added later)."""
        existing = self.lab_annotators()
        taken = {name for name, _ in existing}
        number = len(existing)
        while len(existing) < count:
            number += 1
            name = f"a{number:02d}"
            if name not in taken:
                with self.transaction() as db:
                    self.add_annotator(db, name, "lab")
                existing.append((name, self.token_of(name)))
        return existing

    def join_study(self, name: str, group_id: str) -> str:
        """A Prolific participant's token: their own place in the study of `group_id`, while one
        of its per_item places is free. A place is held by every sign-up that was not withdrawn
        and has finished its HIT or been active within the hold time."""
        with self.transaction() as db:
            row = db.execute("SELECT withdrawn_at FROM annotators WHERE annotator = ?", (name,)).fetchone()
            if row is not None and row[0] is not None:
                raise Rejected("your place in this study was withdrawn (returned, timed out or rejected on "
                               "Prolific)", 403)
            if row is None:
                if self.places_held(db, group_id) >= self.plan.options.per_item:
                    raise Rejected(f"study full: all {self.plan.options.per_item} places of this study are taken; "
                                   "please return the study on Prolific", 409)
                self.add_annotator(db, name, "prolific", group_id)
        return self.token_of(name)

    def places_held(self, db: sqlite3.Connection, group_id: str) -> int:
        cutoff = time.time() - self.hold_seconds
        return db.execute(
            "SELECT COUNT(*) FROM annotators a WHERE kind = 'prolific' AND group_only = ? AND withdrawn_at IS NULL "
            "AND (created_at > ? OR EXISTS (SELECT 1 FROM assignments s WHERE s.annotator = a.annotator "
            "AND (s.completed_at IS NOT NULL OR s.last_active_at > ?)))", (group_id, cutoff, cutoff)).fetchone()[0]

    def authenticate(self, token: str) -> Annotator | None:
        """The active annotator holding this token, looked up by its hash (a lookup by a
        SHA-256 tells a timing observer nothing about the token)."""
        if not isinstance(token, str) or not token or not token.isascii():
            return None
        with self.lock:
            row = self.db.execute("SELECT annotator, kind, group_only, withdrawn_at FROM annotators "
                                  "WHERE token_hash = ? AND kind != 'mturk'", (token_hash(token),)).fetchone()
        if row is None:
            return None
        if row[3] is not None:
            raise Rejected("your place in this study was withdrawn (returned, timed out or rejected on Prolific)", 403)
        return Annotator(*row[:3])

    # -- HITs --
    def current_or_next_hit(self, annotator: Annotator) -> Hit | None:
        """The annotator's unfinished HIT (resume), else a newly claimed one, else None."""
        with self.transaction() as db:
            row = db.execute("SELECT hit_id FROM assignments WHERE annotator = ? AND completed_at IS NULL "
                             "ORDER BY claimed_at, rowid LIMIT 1", (annotator.name,)).fetchone()
            if row:
                return self.plan.hit_by_id[row[0]]
            hit = self.next_free_hit(db, annotator)
            if hit is not None:
                now = time.time()
                db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, NULL)",
                           (hit.hit_id, hit.group_id, annotator.name, now, now))
                return hit
            return self.take_over_idle_hit(db, annotator)

    def own_groups(self, db: sqlite3.Connection, annotator: Annotator) -> set[str]:
        """Groups this annotator holds, held or lost: they never get a second copy of one."""
        return {row[0] for row in db.execute("SELECT group_id FROM assignments WHERE annotator = ? UNION "
                                             "SELECT group_id FROM handoffs WHERE annotator = ?",
                                             (annotator.name, annotator.name))}

    def take_over_idle_hit(self, db: sqlite3.Connection, annotator: Annotator) -> Hit | None:
        """When no copy is free, the HIT idle longest (no rating from its holder for over
        hold_seconds) passes to this annotator, so a participant who walked away cannot block
        the study. The idle holder's ratings of it leave the current ratings (history keeps
        them: an item never has more than per_item current ratings); their next request is
        told the HIT passed on."""
        own = self.own_groups(db, annotator)
        for hit_id, group_id, holder in db.execute(
                "SELECT hit_id, group_id, annotator FROM assignments WHERE completed_at IS NULL "
                "AND last_active_at < ? ORDER BY last_active_at, rowid", (time.time() - self.hold_seconds,)).fetchall():
            if group_id in own or annotator.group_only not in (None, group_id):
                continue
            hit = self.plan.hit_by_id[hit_id]
            marks = ",".join("?" * len(hit.item_ids))
            db.execute(f"DELETE FROM ratings WHERE annotator = ? AND item_id IN ({marks})", (holder, *hit.item_ids))
            db.execute("INSERT INTO handoffs VALUES (?, ?, ?, ?)", (hit_id, group_id, holder, time.time()))
            now = time.time()
            db.execute("UPDATE assignments SET annotator = ?, claimed_at = ?, last_active_at = ? WHERE hit_id = ?",
                       (annotator.name, now, now, hit_id))
            logger.info("HIT %s passed from %s (idle) to %s", hit_id, holder, annotator.name)
            return hit
        return None

    def next_free_hit(self, db: sqlite3.Connection, annotator: Annotator) -> Hit | None:
        taken = {row[0] for row in db.execute("SELECT hit_id FROM assignments")}
        own = self.own_groups(db, annotator)
        for hit in self.plan.hits:
            if hit.hit_id in taken or hit.group_id in own:
                continue
            if annotator.group_only is None or hit.group_id == annotator.group_only:
                return hit
        return None

    def progress(self, annotator: Annotator) -> tuple[int, int]:
        """(HITs completed, HITs this annotator can do at most: one per group)."""
        with self.lock:
            done = self.db.execute("SELECT COUNT(*) FROM assignments WHERE annotator = ? AND completed_at IS NOT NULL",
                                   (annotator.name,)).fetchone()[0]
        return done, 1 if annotator.group_only else len(self.plan.groups)

    def ratings_of(self, annotator: Annotator, item_ids) -> dict[str, int]:
        marks = ",".join("?" * len(item_ids))
        with self.lock:
            rows = self.db.execute(f"SELECT item_id, typicality FROM ratings WHERE annotator = ? "
                                   f"AND item_id IN ({marks})", (annotator.name, *item_ids)).fetchall()
        return dict(rows)

    # -- ratings --
    def submit(self, annotator: Annotator, hit_id: str, ratings: list[tuple[str, int]]) -> int:
        """Store ratings of items of a HIT the annotator holds, all or nothing; each rating
        restarts the HIT's hand-off timer."""
        with self.transaction() as db:
            hit = self.held_hit(db, annotator, hit_id)
            outside = [item_id for item_id, _ in ratings if item_id not in hit.item_ids]
            if outside:
                raise Rejected(f"item_id {outside[0]!r}: not an item of this HIT")
            self.check_room(db, annotator, [item_id for item_id, _ in ratings])
            self.write_ratings(db, annotator.name, ratings, f"web:{hit_id}")
            db.execute("UPDATE assignments SET last_active_at = ? WHERE hit_id = ?", (time.time(), hit_id))
            rated = self.ratings_of(annotator, hit.item_ids)
            if len(rated) == len(hit.item_ids):
                db.execute("UPDATE assignments SET completed_at = ? WHERE hit_id = ? AND completed_at IS NULL",
                           (time.time(), hit_id))
        return len(ratings)

    def held_hit(self, db: sqlite3.Connection, annotator: Annotator, hit_id: str) -> Hit:
        held = db.execute("SELECT 1 FROM assignments WHERE hit_id = ? AND annotator = ?",
                          (hit_id, annotator.name)).fetchone()
        hit = self.plan.hit_by_id.get(hit_id) if held else None
        if hit is not None:
            return hit
        if db.execute("SELECT 1 FROM handoffs WHERE hit_id = ? AND annotator = ?", (hit_id, annotator.name)).fetchone():
            raise Rejected(f"these texts passed to another annotator after {self.hold_seconds / 60:g} minutes without "
                           "a rating from you; your saved ratings of them are kept in the history. Here are your "
                           "next texts.", 409)
        raise Rejected("hit_id: not a HIT assigned to this token")

    def check_room(self, db: sqlite3.Connection, annotator: Annotator, item_ids: list[str]) -> None:
        """Never more than per_item current ratings of one item (a new rating, not a change)."""
        for item_id in item_ids:
            others = db.execute("SELECT COUNT(*) FROM ratings WHERE item_id = ? AND annotator != ?",
                                (item_id, annotator.name)).fetchone()[0]
            if others >= self.plan.options.per_item:
                raise Rejected(f"item_id {item_id!r}: already has its {self.plan.options.per_item} ratings", 409)

    @staticmethod
    def write_ratings(db: sqlite3.Connection, annotator: str, ratings: list[tuple[str, int]], source: str) -> None:
        now = time.time()
        for item_id, typicality in ratings:
            db.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?) ON CONFLICT (annotator, item_id) DO UPDATE "
                       "SET typicality = excluded.typicality, source = excluded.source, updated_at = excluded.updated_at",
                       (annotator, item_id, typicality, source, now))
            db.execute("INSERT INTO rating_history (annotator, item_id, typicality, source, at) VALUES (?, ?, ?, ?, ?)",
                       (annotator, item_id, typicality, source, now))

    # -- the approval gate --
    def import_mturk(self, assignments: list[dict]) -> dict:
        """MTurk assignments ({assignment_id, annotator, group_id, status, platform_status,
        ratings}) in one transaction: new or reinstated approved/pending ones bring their
        ratings, withdrawn ones take theirs away; unchanged ones change nothing."""
        counts = dict.fromkeys(("new", "changed", "unchanged", "ratings_added", "ratings_withdrawn"), 0)
        with self.transaction() as db:
            for a, submission, before in self.changed_statuses(db, assignments, "mturk", "assignment_id", counts):
                db.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?, 'mturk', NULL, ?, NULL)",
                           (a["annotator"], token_hash(secrets.token_urlsafe(24)), time.time()))
                counted_before = before is not None and before[0] != WITHDRAWN
                if a["status"] == WITHDRAWN and counted_before:
                    counts["ratings_withdrawn"] += db.execute("DELETE FROM ratings WHERE annotator = ? AND source = ?",
                                                              (a["annotator"], submission)).rowcount
                elif a["status"] != WITHDRAWN and not counted_before:
                    self.write_ratings(db, a["annotator"], a["ratings"], submission)
                    counts["ratings_added"] += len(a["ratings"])
                self.set_approval(db, submission, a["annotator"], a["group_id"], a["status"], a["platform_status"])
        return counts

    def import_prolific(self, submissions: list[dict]) -> dict:
        """Prolific submissions ({submission_id, annotator, group_id, status, platform_status})
        of participants who signed up here, in one transaction. Withdrawn: current ratings and
        HIT copy released, sign-up ended. Approved again after a withdrawal: restored, if the
        HIT copy is still free (else reported in 'not_restored')."""
        counts = dict.fromkeys(("new", "changed", "unchanged", "ratings_withdrawn", "not_restored"), 0)
        with self.transaction() as db:
            for s, submission, before in self.changed_statuses(db, submissions, "prolific", "submission_id", counts):
                hit_id = before[2] if before else None
                if s["status"] == WITHDRAWN and (before is None or before[0] != WITHDRAWN):
                    hit_id, withdrawn = self.withdraw_participant(db, s["annotator"])
                    counts["ratings_withdrawn"] += withdrawn
                elif s["status"] != WITHDRAWN and before is not None and before[0] == WITHDRAWN:
                    if not self.reinstate_participant(db, s["annotator"], hit_id):
                        counts["not_restored"] += 1
                        continue
                self.set_approval(db, submission, s["annotator"], s["group_id"], s["status"], s["platform_status"],
                                  hit_id)
        return counts

    def changed_statuses(self, db: sqlite3.Connection, rows: list[dict], platform: str, id_key: str,
                         counts: dict) -> Iterator[tuple[dict, str, tuple | None]]:
        """(row, submission, what was stored before or None) for each imported row whose platform
        status is new or changed; counts new, changed and unchanged rows. A re-import of the same
        file therefore changes nothing."""
        for row in rows:
            submission = f"{platform}:{row[id_key]}"
            before = self.approval(db, submission, row["annotator"], row["group_id"])
            if before is not None and before[1] == row["platform_status"]:
                counts["unchanged"] += 1
                continue
            counts["new" if before is None else "changed"] += 1
            yield row, submission, before

    @staticmethod
    def approval(db: sqlite3.Connection, submission: str, annotator: str, group_id: str) -> tuple | None:
        """(status, platform status, hit id) stored for this submission, else None; the same
        participant and group under another submission id is a mistake in the file."""
        row = db.execute("SELECT submission, status, platform_status, hit_id FROM approvals "
                         "WHERE submission = ? OR (annotator = ? AND group_id = ?)",
                         (submission, annotator, group_id)).fetchone()
        if row is not None and row[0] != submission:
            raise UserError(f"{submission.split(':', 1)[1]}: this participant's HIT was imported before under "
                            f"{row[0].split(':', 1)[1]}; a participant has one submission per HIT")
        return None if row is None else row[1:]

    @staticmethod
    def set_approval(db: sqlite3.Connection, submission: str, annotator: str, group_id: str, status: str,
                     platform_status: str, hit_id: str | None = None) -> None:
        db.execute("INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (submission) DO UPDATE SET "
                   "status = excluded.status, platform_status = excluded.platform_status, hit_id = excluded.hit_id, "
                   "updated_at = excluded.updated_at",
                   (submission, annotator, group_id, status, platform_status, hit_id, time.time()))

    @staticmethod
    def withdraw_participant(db: sqlite3.Connection, annotator: str) -> tuple[str | None, int]:
        """End a web participant's sign-up: their current ratings go (history keeps them) and
        their HIT copy is free again. -> (the HIT they held, ratings withdrawn)."""
        row = db.execute("SELECT hit_id FROM assignments WHERE annotator = ?", (annotator,)).fetchone()
        withdrawn = db.execute("DELETE FROM ratings WHERE annotator = ?", (annotator,)).rowcount
        db.execute("DELETE FROM assignments WHERE annotator = ?", (annotator,))
        db.execute("UPDATE annotators SET withdrawn_at = ? WHERE annotator = ?", (time.time(), annotator))
        return (row[0] if row else None), withdrawn

    def reinstate_participant(self, db: sqlite3.Connection, annotator: str, hit_id: str | None) -> bool:
        """Undo a withdrawal (the platform approved after all): the HIT copy and the latest
        rating of each of its texts come back, if nobody has taken that copy since."""
        if hit_id is not None:
            if db.execute("SELECT 1 FROM assignments WHERE hit_id = ?", (hit_id,)).fetchone():
                return False
            hit = self.plan.hit_by_id[hit_id]
            latest = {item_id: value for item_id, value in db.execute(
                "SELECT item_id, typicality FROM rating_history WHERE annotator = ? AND source = ? ORDER BY id",
                (annotator, f"web:{hit_id}"))}
            now = time.time()
            complete = now if len(latest) == len(hit.item_ids) else None
            db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?)",
                       (hit_id, hit.group_id, annotator, now, now, complete))
            self.write_ratings(db, annotator, sorted(latest.items()), f"web:{hit_id}")
        db.execute("UPDATE annotators SET withdrawn_at = NULL WHERE annotator = ?", (annotator,))
        return True

    def signed_up(self, names: list[str]) -> list[str]:
        """Those of `names` that are Prolific participants here."""
        marks = ",".join("?" * len(names))
        with self.lock:
            return [row[0] for row in self.db.execute(
                f"SELECT annotator FROM annotators WHERE kind = 'prolific' AND annotator IN ({marks})", names)]

    def current_ratings(self) -> list[tuple[str, str, int, bool]]:
        """(annotator, item_id, typicality, counted) of every current rating: counted when the
        annotator is a lab annotator or the platform approved their work on that item's group."""
        with self.lock:
            rows = self.db.execute("SELECT r.annotator, r.item_id, r.typicality, a.kind FROM ratings r "
                                   "JOIN annotators a USING (annotator)").fetchall()
            approved = set(self.db.execute("SELECT annotator, group_id FROM approvals WHERE status = ?", (COUNTED,)))
        return [(annotator, item_id, value,
                 kind == "lab" or (annotator, self.group_of_item.get(item_id)) in approved)
                for annotator, item_id, value, kind in rows]
