"""The state store: one SQLite database in the state dir. The only module with SQL.

WAL, foreign keys, a busy timeout, every write in an IMMEDIATE transaction (so the CLI and the daemon
never see "database is locked"), migrations as an ordered list recorded in `schema_migrations`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from tegbatchd.errors import UserError
from tegbatchd.paths import FILE_MODE

BUSY_TIMEOUT_MS = 60_000
TERMINAL_JOB_STATES = ("done", "partial", "failed", "canceled")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- migrations: append only; each is a list of statements -------------------------------------------
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("jobs, stages, intents, batches, requests, events", [
        """CREATE TABLE jobs(
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL, spec TEXT NOT NULL,
            data_root TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'batch', state TEXT NOT NULL,
            created_at TEXT NOT NULL, finished_at TEXT)""",
        """CREATE TABLE stages(
            id INTEGER PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL, notes TEXT,
            UNIQUE(job_id, seq))""",
        """CREATE TABLE intents(
            id INTEGER PRIMARY KEY, stage_id INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
            archive TEXT NOT NULL, request_count INTEGER NOT NULL, byte_size INTEGER NOT NULL,
            state TEXT NOT NULL, batch_id TEXT, error TEXT, created_at TEXT NOT NULL)""",
        """CREATE TABLE batches(
            id TEXT PRIMARY KEY, intent_id INTEGER NOT NULL UNIQUE REFERENCES intents(id),
            created_at TEXT NOT NULL, expires_at TEXT, api_status TEXT NOT NULL, local_state TEXT NOT NULL,
            processing INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,
            errored INTEGER NOT NULL DEFAULT 0, canceled INTEGER NOT NULL DEFAULT 0,
            expired INTEGER NOT NULL DEFAULT 0, ended_at TEXT, archived_at TEXT,
            next_poll_at TEXT, last_polled_at TEXT, retrieved_at TEXT, error TEXT)""",
        """CREATE TABLE requests(
            id INTEGER PRIMARY KEY, intent_id INTEGER NOT NULL REFERENCES intents(id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL, output_path TEXT NOT NULL, model TEXT, max_tokens INTEGER,
            outcome TEXT, error_type TEXT, error_message TEXT,
            input_tokens INTEGER, output_tokens INTEGER, cache_write_tokens INTEGER, cache_read_tokens INTEGER,
            stop_reason TEXT, output_sha256 TEXT, written_at TEXT, retried_by INTEGER,
            UNIQUE(intent_id, custom_id))""",
        "CREATE INDEX requests_output ON requests(output_path)",
        """CREATE TABLE events(
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, job_id TEXT, batch_id TEXT,
            kind TEXT NOT NULL, message TEXT NOT NULL)""",
    ]),
    ("notices (notify once) and a key-value table for daemon state", [
        """CREATE TABLE notices(
            key TEXT PRIMARY KEY, job_id TEXT, kind TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
            open_path TEXT, urgency TEXT NOT NULL DEFAULT 'normal', created_at TEXT NOT NULL,
            delivered_at TEXT, attempts INTEGER NOT NULL DEFAULT 0)""",
        "CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]),
    ("indexes for polling and listing", [
        "CREATE INDEX batches_pending ON batches(local_state, api_status)",
        "CREATE INDEX intents_stage ON intents(stage_id)",
        "CREATE INDEX stages_job ON stages(job_id)",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)


class RetrievalRow(NamedTuple):
    """What retrieval needs of one request (a full row dict is ~10x larger)."""

    id: int
    output_path: str
    done: bool        # has an outcome
    written: bool     # its output file was written


class StoreError(UserError):
    """The state database cannot be used (corrupt, from a newer tegbatchd, unwritable)."""

    @classmethod
    def unusable(cls, path: Path, exc: sqlite3.DatabaseError) -> StoreError:
        """The error to show for an SQLite failure (damaged pages, disk full, I/O error), found at any time.

        A lock held too long by another process is said as such: the database is not damaged then.
        """
        if _is_lock_error(exc):
            return cls(f"the state database {path} stayed locked by another tegbatchd process ({exc})",
                       next_step="wait for the other command or the daemon to finish, then run again; "
                                 "the database is not damaged")
        return cls(f"the state database {path} is unreadable or cannot be written ({exc})",
                   next_step="if it is damaged, move it aside and run again (a new one is made; written "
                             "outputs stay where they are); if the disk is full, free space first")


def _is_lock_error(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds a lock (nothing is wrong with the file)."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Store:
    """Jobs → stages → intents → batches → requests, plus events, notices and daemon state."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # --- opening and migrations ---------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, migrate: bool = True) -> Store:
        """Open (creating 0600) and migrate the database at path.

        Raise StoreError if it is not a tegbatchd database, is corrupt, or is from a newer version
        (then nothing is touched). Another process opening or migrating it at the same moment (a new
        state dir used by two commands at once) is waited for, up to the busy timeout.
        """
        fresh = not path.exists()
        if fresh:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            os.close(fd)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            conn = None
            try:
                conn = _connect(path)
                version = cls._version(conn)
                if version > SCHEMA_VERSION:  # checked before any change: even the journal mode stays as it is
                    conn.close()
                    raise StoreError(f"the state database {path} is from a newer tegbatchd (schema {version}, "
                                     f"this one knows {SCHEMA_VERSION})",
                                     next_step="upgrade tegbatchd; nothing was changed")
                # switching to WAL and the first migration meet "locked" while another process does
                # the same; SQLite does not always wait for those itself
                conn.execute("PRAGMA journal_mode=WAL")
                store = cls(conn, path)
                if migrate and version < SCHEMA_VERSION:
                    store._migrate(version)
                break
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    raise StoreError.unusable(path, exc) from None
                time.sleep(0.02)
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{path}{suffix}")
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(FILE_MODE)
        return store

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        # one statement, one snapshot: another process's migration may commit between two statements
        has, tables = conn.execute(
            "SELECT (SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'), "
            "(SELECT count(*) FROM sqlite_master WHERE type='table')").fetchone()
        if not has:
            if tables:
                raise sqlite3.DatabaseError("not a tegbatchd state database")
            return 0
        return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    def _migrate(self, current: int, target: int | None = None) -> None:
        target = SCHEMA_VERSION if target is None else target
        with self.tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY, "
                      "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self._version(c)  # another process may have migrated meanwhile
            for number, (description, statements) in enumerate(MIGRATIONS, start=1):
                if number <= current or number > target:
                    continue
                for sql in statements:
                    c.execute(sql)
                c.execute("INSERT INTO schema_migrations VALUES(?,?,?)", (number, description, now_iso()))

    @property
    def schema_version(self) -> int:
        return self._version(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE write transaction (retried on a rare lock race), committed on success."""
        for attempt in range(50):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict | None:
        row = self.conn.execute(sql, tuple(args)).fetchone()
        return dict(row) if row else None

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, tuple(args))]

    # --- jobs and stages -------------------------------------------------------------------------
    def create_job(self, job_id: str, kind: str, title: str, spec: dict, data_root: str,
                   stage_names: list[str], mode: str = "batch") -> str:
        """Record a job and its stages (all 'waiting')."""
        with self.tx() as c:
            c.execute("INSERT INTO jobs(id, kind, title, spec, data_root, mode, state, created_at) "
                      "VALUES(?,?,?,?,?,?,?,?)",
                      (job_id, kind, title, json.dumps(spec), data_root, mode, "active", now_iso()))
            for seq, name in enumerate(stage_names):
                c.execute("INSERT INTO stages(job_id, seq, name, state) VALUES(?,?,?,?)",
                          (job_id, seq, name, "waiting"))
        return job_id

    def get_job(self, job_id: str) -> dict | None:
        job = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        if job:
            job["spec"] = json.loads(job["spec"])
        return job

    def list_jobs(self, *, include_finished: bool = True, limit: int | None = None) -> list[dict]:
        sql = "SELECT * FROM jobs"
        if not include_finished:
            sql += " WHERE state='active' OR finished_at > ?"
        sql += " ORDER BY created_at DESC, rowid DESC"
        args: list[Any] = []
        if not include_finished:
            args.append(datetime.fromtimestamp(time.time() - 7 * 86400, UTC).isoformat())
        if limit:
            sql += f" LIMIT {int(limit)}"
        jobs = self._all(sql, args)
        for job in jobs:
            job["spec"] = json.loads(job["spec"])
        return jobs

    def active_jobs(self) -> list[dict]:
        """Active jobs the poller drives: batch mode only (a `--now` job is run by its own process)."""
        return [j for j in self.list_jobs() if j["state"] == "active" and j["mode"] != "now"]

    def set_job_state(self, job_id: str, state: str) -> None:
        finished = now_iso() if state in TERMINAL_JOB_STATES else None
        with self.tx() as c:
            c.execute("UPDATE jobs SET state=?, finished_at=? WHERE id=?", (state, finished, job_id))

    def stages(self, job_id: str) -> list[dict]:
        rows = self._all("SELECT * FROM stages WHERE job_id=? ORDER BY seq", (job_id,))
        for row in rows:
            row["notes"] = json.loads(row["notes"]) if row["notes"] else []
        return rows

    def set_stage_state(self, stage_id: int, state: str, notes: list[str] | None = None) -> None:
        with self.tx() as c:
            if notes is None:
                c.execute("UPDATE stages SET state=? WHERE id=?", (state, stage_id))
            else:
                c.execute("UPDATE stages SET state=?, notes=? WHERE id=?", (state, json.dumps(notes), stage_id))

    def claim_stage(self, stage_id: int, from_state: str, to_state: str) -> bool:
        """Move a stage from one state to another only if it is still in from_state (one winner)."""
        with self.tx() as c:
            cur = c.execute("UPDATE stages SET state=? WHERE id=? AND state=?", (to_state, stage_id, from_state))
            return cur.rowcount == 1

    # --- intents (recorded before create) and batches ---------------------------------------------
    def create_intent(self, stage_id: int, archive: str, rows: list[tuple[str, str, str | None, int | None]],
                      byte_size: int, state: str = "open") -> int:
        """Record an intent and its requests (custom_id, absolute output path, model, max_tokens).

        State 'open' is a batch to create (reconciled by the poller); 'now' is sent by `--now`, never batched.
        """
        with self.tx() as c:
            cur = c.execute("INSERT INTO intents(stage_id, archive, request_count, byte_size, state, created_at) "
                            "VALUES(?,?,?,?,?,?)", (stage_id, archive, len(rows), byte_size, state, now_iso()))
            intent_id = cur.lastrowid
            c.executemany("INSERT INTO requests(intent_id, custom_id, output_path, model, max_tokens) "
                          "VALUES(?,?,?,?,?)", [(intent_id, *r) for r in rows])
        return intent_id

    def get_intent(self, intent_id: int) -> dict | None:
        return self._one("SELECT * FROM intents WHERE id=?", (intent_id,))

    def open_intents(self) -> list[dict]:
        return self._all("SELECT i.*, s.job_id FROM intents i JOIN stages s ON s.id=i.stage_id "
                         "WHERE i.state='open' ORDER BY i.id")

    def intents_of_stage(self, stage_id: int) -> list[dict]:
        return self._all("SELECT * FROM intents WHERE stage_id=? ORDER BY id", (stage_id,))

    def attach_batch(self, intent_id: int, batch: dict) -> None:
        """Record the batch an intent created (or was reconciled to). Idempotent."""
        with self.tx() as c:
            c.execute("UPDATE intents SET state='created', batch_id=?, error=NULL WHERE id=?", (batch["id"], intent_id))
            c.execute(
                "INSERT OR IGNORE INTO batches(id, intent_id, created_at, expires_at, api_status, local_state, "
                "processing, next_poll_at) VALUES(?,?,?,?,?,?,?,?)",
                (batch["id"], intent_id, batch["created_at"], batch.get("expires_at"), batch["processing_status"],
                 "submitted", batch["request_counts"]["processing"], None))
            self._apply_status(c, batch)

    def fail_intent(self, intent_id: int, error: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE intents SET state='failed', error=? WHERE id=?", (error, intent_id))

    def known_batch_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM batches")}

    def get_batch(self, batch_id: str) -> dict | None:
        return self._one(
            "SELECT b.*, i.stage_id, i.archive, i.request_count, s.job_id, s.name AS stage_name, s.seq AS stage_seq "
            "FROM batches b JOIN intents i ON i.id=b.intent_id JOIN stages s ON s.id=i.stage_id WHERE b.id=?",
            (batch_id,))

    def find_batches(self, prefix: str) -> list[str]:
        """Batch ids starting with prefix (people shorten ids)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.conn.execute("SELECT id FROM batches WHERE id LIKE ? ESCAPE '\\'",
                                                (escaped + "%",))]

    def batches_of_job(self, job_id: str) -> list[dict]:
        return self._all(
            "SELECT b.*, s.seq AS stage_seq, s.name AS stage_name, i.request_count FROM batches b "
            "JOIN intents i ON i.id=b.intent_id JOIN stages s ON s.id=i.stage_id "
            "WHERE s.job_id=? ORDER BY b.created_at, b.rowid", (job_id,))

    def pending_batches(self) -> list[dict]:
        """Batches not yet ended on the API, or ended but not fully retrieved."""
        return self._all(
            "SELECT b.*, s.job_id FROM batches b JOIN intents i ON i.id=b.intent_id "
            "JOIN stages s ON s.id=i.stage_id WHERE b.local_state IN ('submitted','retrieving') "
            "ORDER BY b.created_at")

    def has_pending(self) -> bool:
        """Anything the daemon must poll: unretrieved batches, open intents or active batch-mode jobs."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM batches WHERE local_state IN ('submitted','retrieving'))"
            " + (SELECT count(*) FROM intents WHERE state='open')"
            " + (SELECT count(*) FROM jobs WHERE state='active' AND mode!='now')").fetchone()
        return row[0] > 0

    @staticmethod
    def _apply_status(c: sqlite3.Connection, batch: dict) -> None:
        counts = batch["request_counts"]
        c.execute(
            "UPDATE batches SET api_status=?, processing=?, succeeded=?, errored=?, canceled=?, expired=?, "
            "ended_at=?, archived_at=?, expires_at=coalesce(?, expires_at), last_polled_at=? WHERE id=?",
            (batch["processing_status"], counts["processing"], counts["succeeded"], counts["errored"],
             counts["canceled"], counts["expired"], batch.get("ended_at"), batch.get("archived_at"),
             batch.get("expires_at"), now_iso(), batch["id"]))

    def update_batch_status(self, batch: dict, next_poll_at: str | None = None) -> None:
        """Record what the API said of a batch (a dict shaped like the API's MessageBatch)."""
        with self.tx() as c:
            self._apply_status(c, batch)
            if next_poll_at is not None:
                c.execute("UPDATE batches SET next_poll_at=? WHERE id=?", (next_poll_at, batch["id"]))

    def set_next_poll(self, batch_id: str, when: str | None) -> None:
        with self.tx() as c:
            c.execute("UPDATE batches SET next_poll_at=? WHERE id=?", (when, batch_id))

    def set_batch_local_state(self, batch_id: str, state: str, error: str | None = None) -> None:
        retrieved = now_iso() if state == "retrieved" else None
        with self.tx() as c:
            c.execute("UPDATE batches SET local_state=?, error=?, retrieved_at=coalesce(?, retrieved_at) WHERE id=?",
                      (state, error, retrieved, batch_id))

    # --- requests and results ---------------------------------------------------------------------
    def requests_of_batch(self, batch_id: str) -> dict[str, dict]:
        """custom_id → request row for the requests sent in this batch."""
        rows = self._all("SELECT r.* FROM requests r JOIN batches b ON b.intent_id=r.intent_id WHERE b.id=?",
                         (batch_id,))
        return {r["custom_id"]: r for r in rows}

    def retrieval_rows(self, batch_id: str) -> dict[str, RetrievalRow]:
        """custom_id → RetrievalRow for the requests sent in this batch: the few columns retrieval needs
        (100,000 full row dicts would take ~150 MB)."""
        cur = self.conn.cursor()
        cur.row_factory = None
        cur.execute("SELECT r.custom_id, r.id, r.output_path, r.outcome IS NOT NULL, r.written_at IS NOT NULL "
                    "FROM requests r JOIN batches b ON b.intent_id=r.intent_id WHERE b.id=?", (batch_id,))
        return {cid: RetrievalRow(rid, path, bool(done), bool(written)) for cid, rid, path, done, written in cur}

    def batch_results_summary(self, batch_id: str) -> tuple[int, list[dict], list[str]]:
        """(successes, failures [{custom_id, outcome, error_type}], custom_ids cut at max_tokens), by custom_id."""
        cur = self.conn.execute(
            "SELECT r.custom_id, r.outcome, r.error_type, r.stop_reason FROM requests r "
            "JOIN batches b ON b.intent_id=r.intent_id WHERE b.id=? "
            "AND (r.outcome <> 'succeeded' OR r.stop_reason = 'max_tokens') ORDER BY r.custom_id", (batch_id,))
        failures, truncated = [], []
        for cid, outcome, error_type, stop_reason in cur:
            if outcome not in ("succeeded", None):
                failures.append({"custom_id": cid, "outcome": outcome, "error_type": error_type})
            if stop_reason == "max_tokens":
                truncated.append(cid)
        succeeded = self.conn.execute(
            "SELECT count(*) FROM requests r JOIN batches b ON b.intent_id=r.intent_id "
            "WHERE b.id=? AND r.outcome='succeeded'", (batch_id,)).fetchone()[0]
        return succeeded, failures, truncated

    def requests_of_intent(self, intent_id: int) -> list[dict]:
        return self._all("SELECT * FROM requests WHERE intent_id=? ORDER BY id", (intent_id,))

    def record_results(self, results: list[dict]) -> None:
        """Record a group of outcomes in one transaction. Each dict: id, outcome and optional fields."""
        fields = ("outcome", "error_type", "error_message", "input_tokens", "output_tokens", "cache_write_tokens",
                  "cache_read_tokens", "stop_reason", "output_sha256", "written_at")
        with self.tx() as c:
            c.executemany(
                f"UPDATE requests SET {', '.join(f'{f}=?' for f in fields)} WHERE id=?",
                [tuple(r.get(f) for f in fields) + (r["id"],) for r in results])

    def forget_written(self, request_ids: list[int]) -> None:
        """Clear records whose file went missing, so the next retrieval writes them again."""
        with self.tx() as c:
            c.executemany("UPDATE requests SET outcome=NULL, output_sha256=NULL, written_at=NULL WHERE id=?",
                          [(i,) for i in request_ids])

    def mark_retried(self, request_ids: list[int], intent_id: int) -> None:
        with self.tx() as c:
            c.executemany("UPDATE requests SET retried_by=? WHERE id=?", [(intent_id, i) for i in request_ids])

    def job_requests(self, job_id: str) -> list[dict]:
        """Every request of a job with its batch id and stage."""
        return self._all(
            "SELECT r.*, i.batch_id, s.seq AS stage_seq, s.name AS stage_name FROM requests r "
            "JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id WHERE s.job_id=? "
            "ORDER BY r.id", (job_id,))

    # One row per output of a job (its attempts grouped): the latest attempt decides (see job_progress).
    _JOB_OUTPUTS = (
        "SELECT max(r.outcome IS 'succeeded') AS ok, max(r.outcome IS NULL) AS open, min(s.seq) AS seq,"
        " count(*) AS attempts, min(r.id) AS first_id, max(r.id) AS last_id FROM requests r"
        " JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id WHERE s.job_id=?"
        " GROUP BY r.output_path")

    def job_output_counts(self, job_id: str) -> tuple[int, int, int, int, int]:
        """(written: outputs with a successful attempt, ready: those of the last stage, pending: outputs
        without success with an attempt still open, attempts: requests sent, last stage seq). Counted by
        SQLite: a job of 100,000 requests costs no Python memory."""
        return tuple(self.conn.execute(
            f"WITH o AS ({self._JOB_OUTPUTS}), last AS (SELECT coalesce(max(seq), 0) AS seq FROM o)"
            " SELECT coalesce(sum(ok), 0), coalesce(sum(ok AND o.seq=last.seq), 0),"
            " coalesce(sum(NOT ok AND open), 0), coalesce(sum(attempts), 0), last.seq FROM o, last",
            (job_id,)).fetchone())

    def job_failed_outputs(self, job_id: str) -> list[tuple[str, str | None]]:
        """(custom_id, batch_id) of the latest attempt of each output that failed in every attempt, in the
        order of their first attempts."""
        return [tuple(r) for r in self.conn.execute(
            f"WITH o AS ({self._JOB_OUTPUTS}) SELECT l.custom_id, li.batch_id FROM o"
            " JOIN requests l ON l.id=o.last_id JOIN intents li ON li.id=l.intent_id"
            " WHERE NOT o.ok AND NOT o.open ORDER BY o.first_id", (job_id,))]

    def job_written_outputs(self, job_id: str) -> Iterator[tuple[int, str]]:
        """(stage seq, output path) of each successful request of a job, streamed."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(
            "SELECT s.seq, r.output_path FROM requests r JOIN intents i ON i.id=r.intent_id "
            "JOIN stages s ON s.id=i.stage_id WHERE s.job_id=? AND r.outcome='succeeded'", (job_id,))

    def usage_by_model(self, *, job_id: str | None = None, batch_id: str | None = None) -> list[dict]:
        """Summed usage per model for a job or a batch."""
        where, arg = ("i.batch_id=?", batch_id) if batch_id else ("s.job_id=?", job_id)
        return self._all(
            "SELECT r.model, sum(coalesce(r.input_tokens,0)) AS input, sum(coalesce(r.output_tokens,0)) AS output, "
            "sum(coalesce(r.cache_write_tokens,0)) AS cache_write, sum(coalesce(r.cache_read_tokens,0)) AS cache_read "
            "FROM requests r JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id "
            f"WHERE {where} GROUP BY r.model", (arg,))

    def batch_outcome_counts(self, batch_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT coalesce(r.outcome,'pending'), count(*), sum(r.written_at IS NOT NULL) FROM requests r "
            "JOIN batches b ON b.intent_id=r.intent_id WHERE b.id=? GROUP BY 1", (batch_id,)).fetchall()
        out = {r[0]: r[1] for r in rows}
        out["written"] = sum(r[2] or 0 for r in rows)
        return out

    # --- events, notices, daemon state ------------------------------------------------------------
    def add_event(self, kind: str, message: str, *, job_id: str | None = None, batch_id: str | None = None) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO events(at, job_id, batch_id, kind, message) VALUES(?,?,?,?,?)",
                      (now_iso(), job_id, batch_id, kind, message))

    def events(self, *, job_id: str | None = None, batch_id: str | None = None, kind: str | None = None) -> list[dict]:
        clauses, args = [], []
        for column, value in (("job_id", job_id), ("batch_id", batch_id), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._all(f"SELECT * FROM events{where} ORDER BY id", args)

    def add_notice(self, key: str, kind: str, title: str, body: str, *, job_id: str | None = None,
                   open_path: str | None = None, urgency: str = "normal") -> bool:
        """Queue a notification once per key; return False if that key was already queued."""
        with self.tx() as c:
            cur = c.execute("INSERT OR IGNORE INTO notices(key, job_id, kind, title, body, open_path, urgency, "
                            "created_at) VALUES(?,?,?,?,?,?,?,?)",
                            (key, job_id, kind, title, body, open_path, urgency, now_iso()))
            return cur.rowcount == 1

    def pending_notices(self) -> list[dict]:
        return self._all("SELECT * FROM notices WHERE delivered_at IS NULL ORDER BY created_at")

    def mark_notice_delivered(self, key: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE notices SET delivered_at=?, attempts=attempts+1 WHERE key=?", (now_iso(), key))

    def mark_notice_attempted(self, key: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE notices SET attempts=attempts+1 WHERE key=?", (key,))

    def notices(self) -> list[dict]:
        return self._all("SELECT * FROM notices ORDER BY created_at")

    def kv_get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def kv_set(self, key: str, value: str | None) -> None:
        with self.tx() as c:
            if value is None:
                c.execute("DELETE FROM kv WHERE key=?", (key,))
            else:
                c.execute("INSERT INTO kv(key, value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          (key, value))
