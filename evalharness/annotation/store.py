"""annotation/judgements.sqlite: annotators, the HITs they hold, their ratings and every
earlier version of each rating.

SQLite in WAL mode with synchronous=FULL: a submission is one transaction, committed (and
synced) before the server answers, so killing the server at any moment loses nothing it has
acknowledged, and a failed submission stores nothing. Ratings are unique per (annotator,
item): a resubmission replaces the current rating and the old one stays in rating_history.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evalharness.annotation.plan import Hit, Plan, annotation_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotators (
    annotator   TEXT PRIMARY KEY,
    token       TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('lab', 'prolific', 'mturk')),
    group_only  TEXT,              -- a Prolific participant may take only the HIT of their study
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    hit_id       TEXT PRIMARY KEY,  -- each copy of a group goes to one annotator
    group_id     TEXT NOT NULL,
    annotator    TEXT NOT NULL REFERENCES annotators (annotator),
    claimed_at   REAL NOT NULL,
    completed_at REAL,
    UNIQUE (annotator, group_id)    -- nobody gets two copies of a group: no text rated twice
);
CREATE TABLE IF NOT EXISTS ratings (
    annotator   TEXT NOT NULL REFERENCES annotators (annotator),
    item_id     TEXT NOT NULL,
    typicality  INTEGER NOT NULL CHECK (typicality BETWEEN 1 AND 6),
    source      TEXT NOT NULL,      -- web:<hit id> or mturk:<assignment id>
    updated_at  REAL NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
CREATE TABLE IF NOT EXISTS rating_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    typicality  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS imported_assignments (
    assignment_id TEXT PRIMARY KEY,
    imported_at   REAL NOT NULL
);
"""


HOLD_SECONDS = 2 * 3600
"""How long an unfinished HIT stays reserved for the person who opened it while others wait."""


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


class JudgementStore:
    """One connection; the server calls it from its event loop only, so calls never interleave
    (SQLite serialises writers across processes, e.g. an `annotate import` while serving)."""

    def __init__(self, root: Path, plan: Plan) -> None:
        annotation_dir(root)
        path = store_path(root)
        fresh = not path.exists()
        self.plan = plan
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        if fresh:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception: all or nothing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- annotators --
    def add_annotator(self, name: str, kind: str, group_only: str | None = None) -> str:
        token = secrets.token_urlsafe(24)
        with self.transaction() as db:
            db.execute("INSERT INTO annotators VALUES (?, ?, ?, ?, ?)", (name, token, kind, group_only, time.time()))
        return token

    def lab_annotators(self) -> list[tuple[str, str]]:
        """(name, token) of the personal-link annotators, in creation order."""
        return self.db.execute("SELECT annotator, token FROM annotators WHERE kind = 'lab' "
                               "ORDER BY created_at, annotator").fetchall()

    def ensure_lab_annotators(self, count: int) -> list[tuple[str, str]]:
        """At least `count` personal links; existing ones are kept (more can be added later)."""
        existing = self.lab_annotators()
        taken = {name for name, _ in existing}
        number = len(existing)
        while len(existing) < count:
            number += 1
            name = f"a{number:02d}"
            if name not in taken:
                existing.append((name, self.add_annotator(name, "lab")))
        return existing

    def token_for(self, name: str, kind: str, group_only: str | None = None) -> str:
        """The token of annotator `name`, made on first use (Prolific participants, MTurk workers)."""
        row = self.db.execute("SELECT token FROM annotators WHERE annotator = ?", (name,)).fetchone()
        return row[0] if row else self.add_annotator(name, kind, group_only)

    def authenticate(self, token) -> Annotator | None:
        """The annotator holding this token. Every token is compared, each in constant time, so
        the answer's timing says nothing about how much of a token was right."""
        if not isinstance(token, str) or not token:
            return None
        given = token.encode()
        found = None
        for name, stored, kind, group_only in self.db.execute(
                "SELECT annotator, token, kind, group_only FROM annotators WHERE kind != 'mturk'"):
            if hmac.compare_digest(stored.encode(), given):
                found = Annotator(name, kind, group_only)
        return found

    # -- HITs --
    def current_or_next_hit(self, annotator: Annotator) -> Hit | None:
        """The annotator's unfinished HIT (resume), else a newly claimed one, else None."""
        with self.transaction() as db:
            row = db.execute("SELECT hit_id FROM assignments WHERE annotator = ? AND completed_at IS NULL "
                             "ORDER BY claimed_at, rowid LIMIT 1", (annotator.name,)).fetchone()
            if row:
                return self.plan.hit_by_id[row[0]]
            hit = self.next_free_hit(annotator)
            if hit is not None:
                db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, NULL)",
                           (hit.hit_id, hit.group_id, annotator.name, time.time()))
                return hit
            return self.take_over_abandoned_hit(annotator)

    def take_over_abandoned_hit(self, annotator: Annotator) -> Hit | None:
        """When no copy is free, the oldest HIT held unfinished for over HOLD_SECONDS passes to
        this annotator (a Prolific participant who timed out must not block the study). What
        its first holder had rated stays theirs; their later submission for it is refused."""
        own_groups = {row[0] for row in self.db.execute(
            "SELECT group_id FROM assignments WHERE annotator = ?", (annotator.name,))}
        for hit_id, group_id in self.db.execute(
                "SELECT hit_id, group_id FROM assignments WHERE completed_at IS NULL AND claimed_at < ? "
                "ORDER BY claimed_at, rowid", (time.time() - HOLD_SECONDS,)).fetchall():
            if group_id not in own_groups and annotator.group_only in (None, group_id):
                self.db.execute("UPDATE assignments SET annotator = ?, claimed_at = ? WHERE hit_id = ?",
                                (annotator.name, time.time(), hit_id))
                return self.plan.hit_by_id[hit_id]
        return None

    def next_free_hit(self, annotator: Annotator) -> Hit | None:
        taken = {row[0] for row in self.db.execute("SELECT hit_id FROM assignments")}
        own_groups = {row[0] for row in self.db.execute(
            "SELECT group_id FROM assignments WHERE annotator = ?", (annotator.name,))}
        for hit in self.plan.hits:
            if hit.hit_id in taken or hit.group_id in own_groups:
                continue
            if annotator.group_only is None or hit.group_id == annotator.group_only:
                return hit
        return None

    def progress(self, annotator: Annotator) -> tuple[int, int]:
        """(HITs completed, HITs this annotator can do at most: one per group)."""
        done = self.db.execute("SELECT COUNT(*) FROM assignments WHERE annotator = ? AND completed_at IS NOT NULL",
                               (annotator.name,)).fetchone()[0]
        return done, 1 if annotator.group_only else len(self.plan.groups)

    def ratings_of(self, annotator: Annotator, item_ids) -> dict[str, int]:
        marks = ",".join("?" * len(item_ids))
        rows = self.db.execute(f"SELECT item_id, typicality FROM ratings WHERE annotator = ? AND item_id IN ({marks})",
                               (annotator.name, *item_ids))
        return dict(rows.fetchall())

    # -- ratings --
    def submit(self, annotator: Annotator, hit_id: str, ratings: list[tuple[str, int]]) -> int:
        """Store ratings of items of a HIT the annotator holds, all or nothing."""
        with self.transaction() as db:
            held = db.execute("SELECT 1 FROM assignments WHERE hit_id = ? AND annotator = ?",
                              (hit_id, annotator.name)).fetchone()
            hit = self.plan.hit_by_id.get(hit_id) if held else None
            if hit is None:
                raise Rejected("hit_id: not a HIT assigned to this token")
            outside = [item_id for item_id, _ in ratings if item_id not in hit.item_ids]
            if outside:
                raise Rejected(f"item_id {outside[0]!r}: not an item of this HIT")
            self.write_ratings(db, annotator.name, ratings, f"web:{hit_id}")
            rated = self.ratings_of(annotator, hit.item_ids)
            if len(rated) == len(hit.item_ids):
                db.execute("UPDATE assignments SET completed_at = ? WHERE hit_id = ? AND completed_at IS NULL",
                           (time.time(), hit_id))
        return len(ratings)

    @staticmethod
    def write_ratings(db: sqlite3.Connection, annotator: str, ratings: list[tuple[str, int]], source: str) -> None:
        now = time.time()
        for item_id, typicality in ratings:
            db.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?) ON CONFLICT (annotator, item_id) DO UPDATE "
                       "SET typicality = excluded.typicality, source = excluded.source, updated_at = excluded.updated_at",
                       (annotator, item_id, typicality, source, now))
            db.execute("INSERT INTO rating_history (annotator, item_id, typicality, source, at) VALUES (?, ?, ?, ?, ?)",
                       (annotator, item_id, typicality, source, now))

    def import_assignments(self, assignments: list[dict]) -> list[dict]:
        """Imported crowd assignments ({assignment_id, annotator, ratings}) in one transaction;
        those imported before are skipped. -> the new ones."""
        new = []
        with self.transaction() as db:
            for assignment in assignments:
                if db.execute("SELECT 1 FROM imported_assignments WHERE assignment_id = ?",
                              (assignment["assignment_id"],)).fetchone():
                    continue
                db.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?, 'mturk', NULL, ?)",
                           (assignment["annotator"], secrets.token_urlsafe(24), time.time()))
                self.write_ratings(db, assignment["annotator"], assignment["ratings"],
                                   f"mturk:{assignment['assignment_id']}")
                db.execute("INSERT INTO imported_assignments VALUES (?, ?)", (assignment["assignment_id"], time.time()))
                new.append(assignment)
        return new

    def current_ratings(self) -> list[tuple[str, str, int]]:
        """(annotator, item_id, typicality) of every current rating."""
        return self.db.execute("SELECT annotator, item_id, typicality FROM ratings").fetchall()
