"""The state store: one SQLite database in the state dir. The only module with SQL.

WAL, foreign keys, a busy timeout, every write in an IMMEDIATE transaction (so the CLI and the daemon
never see "database is locked"), migrations as an ordered list recorded in `schema_migrations`.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from tegbatchd.engine.states import (
    BATCH_MOVES,
    INTENT_MOVES,
    JOB_MOVES,
    MISSING_RESULT,
    STAGE_MOVES,
    BatchState,
    IntentState,
    JobState,
    Outcome,
    StageState,
    predecessors,
)
from tegbatchd.errors import EXIT_STATE, UserError
from tegbatchd.paths import FILE_MODE

BUSY_TIMEOUT_MS = 60_000
SMALL_CACHE = -256  # KiB of page cache for retrieval's connections (SQLite's default: 2 MB)
DatabaseError = sqlite3.DatabaseError  # what a damaged database raises, for modules that hold no SQL
TERMINAL_JOB_STATES = tuple(str(s) for s in (JobState.DONE, JobState.PARTIAL, JobState.FAILED, JobState.CANCELED))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_USAGE_SUMS = ("coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
               "coalesce(sum(cache_write_tokens), 0), coalesce(sum(cache_read_tokens), 0)")
_OUTCOMES = ("succeeded", "errored", "canceled", "expired")
# intent_counts' counted columns, and the sums of request rows that give them (in the same order): every
# attempt (as migration 5 made them), then the latest attempts only (retried_by IS NULL: what a job has)
_COUNTED = ("open", *_OUTCOMES, "written", "input", "output", "cache_write", "cache_read",
            "latest_succeeded", "latest_failed", "latest_open", "latest_truncated", "cache_write_1h", "thinking")
_SUMS_5 = ("sum(outcome IS NULL), sum(outcome IS 'succeeded'), sum(outcome IS 'errored'), sum(outcome IS 'canceled'), "
           "sum(outcome IS 'expired'), sum(written_at IS NOT NULL), " + _USAGE_SUMS)  # frozen: migration 5's
_LATEST_SUMS = ("sum(retried_by IS NULL AND outcome IS 'succeeded'), "
                "sum(retried_by IS NULL AND outcome IS NOT NULL AND outcome IS NOT 'succeeded'), "
                "sum(retried_by IS NULL AND outcome IS NULL), "
                "sum(retried_by IS NULL AND outcome IS 'succeeded' AND stop_reason IS 'max_tokens')")
_SUMS = (_SUMS_5 + ", " + _LATEST_SUMS
         + ", coalesce(sum(cache_write_1h_tokens), 0), coalesce(sum(thinking_tokens), 0)")  # receipts (migration 8)
# the latest failed attempts: the partial covering index requests_failed holds exactly these (a query must
# repeat these terms literally for SQLite to use it)
_LATEST_FAILED = "retried_by IS NULL AND outcome IS NOT NULL AND outcome <> 'succeeded'"
_FAILED_COLUMNS = ("r.id, r.intent_id, r.custom_id, r.output_path, r.model, r.max_tokens, r.outcome, r.error_type, "
                   "r.error_message, r.stop_reason, r.attempt, r.retried_by, r.sent_id")


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
    ("the job engine: blocked jobs, user cancels, attempts, files assembled locally, one stage vocabulary", [
        "ALTER TABLE jobs ADD COLUMN blocked_reason TEXT",
        "ALTER TABLE jobs ADD COLUMN blocked_kind TEXT",
        "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN outcomes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE batches ADD COLUMN canceled_by_user INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE batches ADD COLUMN missing_since TEXT",
        "ALTER TABLE batches ADD COLUMN missing_polls INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE requests ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
        """CREATE TABLE job_files(
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, path TEXT NOT NULL,
            stage_seq INTEGER NOT NULL, written_at TEXT NOT NULL, PRIMARY KEY(job_id, path))""",
        "CREATE INDEX requests_open ON requests(intent_id) WHERE outcome IS NULL",
        "UPDATE stages SET state='done' WHERE state='retrieved'",
        "UPDATE stages SET state='waiting' WHERE state='building'",
        "UPDATE stages SET state='submitted' WHERE state='running'",
        "UPDATE requests SET outcome='errored', error_type='batch_gone', error_message='the API no longer knows "
        "its batch' WHERE outcome IS NULL AND intent_id IN (SELECT intent_id FROM batches WHERE local_state='failed')",
        "UPDATE batches SET local_state='retrieved' WHERE local_state='failed'",
    ]),
    ("counts per intent and model kept as results are recorded (list reads these, not every request)", [
        """CREATE TABLE intent_counts(
            intent_id INTEGER NOT NULL REFERENCES intents(id) ON DELETE CASCADE, model TEXT NOT NULL DEFAULT '',
            requests INTEGER NOT NULL DEFAULT 0, open INTEGER NOT NULL DEFAULT 0,
            succeeded INTEGER NOT NULL DEFAULT 0, errored INTEGER NOT NULL DEFAULT 0,
            canceled INTEGER NOT NULL DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0,
            written INTEGER NOT NULL DEFAULT 0, input INTEGER NOT NULL DEFAULT 0, output INTEGER NOT NULL DEFAULT 0,
            cache_write INTEGER NOT NULL DEFAULT 0, cache_read INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY(intent_id, model))""",
        f"INSERT INTO intent_counts SELECT intent_id, coalesce(model, ''), count(*), {_SUMS_5} FROM requests "
        "GROUP BY intent_id, coalesce(model, '')",
    ]),
    ("when a create was attempted: only an attempted intent is reconciled with batches on the API", [
        "ALTER TABLE intents ADD COLUMN attempted_at TEXT",
        "UPDATE intents SET attempted_at=created_at WHERE state='open'",   # unknown before: assume tried
    ]),
    ("latest-attempt counts per intent and model, each intent's output span (a job's counts and folder without "
     "reading its requests)", [
        "ALTER TABLE intents ADD COLUMN first_output TEXT",   # min and max of its requests' output paths
        "ALTER TABLE intents ADD COLUMN last_output TEXT",
        "UPDATE intents SET first_output=(SELECT min(output_path) FROM requests r WHERE r.intent_id=intents.id), "
        "last_output=(SELECT max(output_path) FROM requests r WHERE r.intent_id=intents.id)",
        "ALTER TABLE intents ADD COLUMN first_written TEXT",  # the same, of the outputs it wrote (never shrinks)
        "ALTER TABLE intents ADD COLUMN last_written TEXT",
        "UPDATE intents SET first_written=(SELECT min(output_path) FROM requests r WHERE r.intent_id=intents.id "
        "AND r.outcome='succeeded'), last_written=(SELECT max(output_path) FROM requests r "
        "WHERE r.intent_id=intents.id AND r.outcome='succeeded')",
        "ALTER TABLE intent_counts ADD COLUMN latest_succeeded INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE intent_counts ADD COLUMN latest_failed INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE intent_counts ADD COLUMN latest_open INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE intent_counts ADD COLUMN latest_truncated INTEGER NOT NULL DEFAULT 0",
        "DELETE FROM intent_counts",
        "INSERT INTO intent_counts(intent_id, model, requests, open, succeeded, errored, canceled, expired, written, "
        "input, output, cache_write, cache_read, latest_succeeded, latest_failed, latest_open, latest_truncated) "
        "SELECT intent_id, coalesce(model, ''), count(*), " + _SUMS_5 + ", " + _LATEST_SUMS +
        " FROM requests GROUP BY intent_id, coalesce(model, '')",
        # the latest failures of a job (list, retry, the engine) without reading its successes
        "CREATE INDEX requests_failed ON requests(intent_id, retried_by, outcome, id, custom_id, output_path, model, "
        f"max_tokens, error_type, error_message, stop_reason, attempt) WHERE {_LATEST_FAILED}",
    ]),
    ("receipts: 1-hour cache writes and thinking tokens per request, summed per intent and model", [
        "ALTER TABLE requests ADD COLUMN cache_write_1h_tokens INTEGER",   # part of cache_write_tokens
        "ALTER TABLE requests ADD COLUMN thinking_tokens INTEGER",         # part of output_tokens
        "ALTER TABLE intent_counts ADD COLUMN cache_write_1h INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE intent_counts ADD COLUMN thinking INTEGER NOT NULL DEFAULT 0",
    ]),
    ("budget: a job's own spending limit (submit --max-cost, resume --max-cost)", [
        "ALTER TABLE jobs ADD COLUMN max_cost_usd REAL",
        "ALTER TABLE jobs ADD COLUMN past_monthly INTEGER NOT NULL DEFAULT 0",   # resume --max-cost allowed it
    ]),
    ("custom_ids unique to their intent: the intent's tag and each request's sent custom_id", [
        "ALTER TABLE intents ADD COLUMN tag TEXT",                 # NULL: sent before tags (as they were)
        "ALTER TABLE requests ADD COLUMN sent_id TEXT",
        "UPDATE requests SET sent_id=custom_id",
        "CREATE UNIQUE INDEX requests_sent ON requests(intent_id, sent_id)",
        "DROP INDEX requests_failed",   # the same covering index, with the sent id a resubmission reads
        "CREATE INDEX requests_failed ON requests(intent_id, retried_by, outcome, id, custom_id, output_path, model, "
        f"max_tokens, error_type, error_message, stop_reason, attempt, sent_id) WHERE {_LATEST_FAILED}",
    ]),
    ("adopt only what is provably ours: batches reconcile adopted are verified; foreign ones kept apart", [
        "ALTER TABLE batches ADD COLUMN reconciled INTEGER NOT NULL DEFAULT 0",   # 1: matched by reconcile
        "ALTER TABLE batches ADD COLUMN verified_at TEXT",                     # its results proved it ours
        """CREATE TABLE foreign_batches(
            batch_id TEXT NOT NULL, intent_id INTEGER NOT NULL REFERENCES intents(id) ON DELETE CASCADE,
            created_at TEXT, found_at TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY(batch_id, intent_id))""",
    ]),
    ("a blocked job's command to go on; each job's estimate at submit (what running jobs may still cost); "
     "assembled files' sha256", [
        "ALTER TABLE jobs ADD COLUMN blocked_next TEXT",   # e.g. tegbatchd resume JOB --max-cost 1.20
        "ALTER TABLE jobs ADD COLUMN estimate_usd REAL",   # the whole job's upper bound, at the price it pays
        "ALTER TABLE job_files ADD COLUMN sha256 TEXT",    # what an assembled file held (hand edits are kept)
        "ALTER TABLE job_files ADD COLUMN output_path TEXT",   # the file it was meant as, when written beside it
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)
_BATCH_DAY = "substr(coalesce(b.created_at, i.created_at), 1, 10)"   # the day a receipt is priced on


class RetrievalRow(NamedTuple):
    """What retrieval needs of one request (a full row dict is ~10x larger)."""

    id: int
    output_path: str
    done: bool        # has an outcome
    written: bool     # its output file was written


@dataclass
class PlannedIntent:
    """One batch to record: its archive (written before), and its requests as rows (custom_id, output path,
    model, max_tokens[, attempt]); `replaces` lists (request id, custom_id) of the failed attempts it resends.
    `tag` and `sent_ids` (one per row): the custom_ids its archive carries (None: the custom_ids as they are)."""

    archive: str
    byte_size: int
    rows: list[tuple] = field(default_factory=list)
    replaces: list[tuple[int, str]] = field(default_factory=list)
    tag: str | None = None
    sent_ids: list[str] | None = None


class StoreError(UserError):
    """The state database cannot be used (corrupt, from a newer tegbatchd, unwritable)."""

    exit_code = EXIT_STATE

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
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def twin(self) -> Store:
        """Another connection to this database, for a helper thread (a connection is not shared), with this
        one's PRAGMA synchronous and a small page cache (retrieval's recorder: rows recorded in order)."""
        twin = Store(_connect(self.path), self.path)
        twin.conn.execute(f"PRAGMA synchronous={int(self.conn.execute('PRAGMA synchronous').fetchone()[0])}")
        twin.conn.execute(f"PRAGMA cache_size={SMALL_CACHE}")
        return twin

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
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @contextmanager
    def synced_by_caller(self) -> Iterator[None]:
        """Commits that do not wait for the disk themselves (PRAGMA synchronous=NORMAL: WAL commits are
        durable at the next checkpoint or OS sync). For retrieval only: it syncs the disk before each group is
        recorded, which also makes the previous group's record durable; one lost to a power cut is written
        again (resumable, idempotent). With it, a small page cache: retrieval walks its rows in order, and
        2 MB of cache bought nothing but memory. Both restored afterwards."""
        before = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(f"PRAGMA cache_size={SMALL_CACHE}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA synchronous={int(before)}")
            self.conn.execute(f"PRAGMA cache_size={int(cache)}")

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
    def create_job(self, job_id: str | Callable[[], str], kind: str, title: str, spec: dict, data_root: str,
                   stage_names: list[str], mode: str = "batch", *, max_cost_usd: float | None = None,
                   estimate_usd: float | None = None) -> str:
        """Record a job and its stages (all 'waiting'), with its own spending limit and its estimate if it
        has them; return its id: job_id, or one drawn from it (drawn again while the id is taken: two
        submits in the same second may draw the same one)."""
        given = job_id
        with self.tx() as c:
            for _ in range(20 if callable(given) else 1):
                new = given() if callable(given) else given
                taken = c.execute("INSERT INTO jobs(id, kind, title, spec, data_root, mode, state, created_at) "
                                  "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                                  (new, kind, title, json.dumps(spec), data_root, mode, JobState.ACTIVE,
                                   now_iso())).rowcount == 0
                if not taken:
                    break
            else:
                raise StoreError(f"job id {new} is taken", next_step="run the same command again")
            job_id = new
            if max_cost_usd is not None:
                c.execute("UPDATE jobs SET max_cost_usd=? WHERE id=?", (max_cost_usd, job_id))
            if estimate_usd is not None:
                c.execute("UPDATE jobs SET estimate_usd=? WHERE id=?", (estimate_usd, job_id))
            for seq, name in enumerate(stage_names):
                c.execute("INSERT INTO stages(job_id, seq, name, state) VALUES(?,?,?,?)",
                          (job_id, seq, name, StageState.WAITING))
        return job_id

    def get_job(self, job_id: str) -> dict | None:
        job = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        if job:
            job["spec"] = json.loads(job["spec"])
        return job

    def list_jobs(self, *, include_finished: bool = True, limit: int | None = None) -> list[dict]:
        sql = "SELECT * FROM jobs"
        args: list[Any] = []
        if not include_finished:  # unfinished jobs always; finished ones for a week
            sql += " WHERE state IN (?,?) OR finished_at > ?"
            args += [JobState.ACTIVE, JobState.BLOCKED,
                     datetime.fromtimestamp(time.time() - 7 * 86400, UTC).isoformat()]
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        jobs = self._all(sql, args)
        for job in jobs:
            job["spec"] = json.loads(job["spec"])
        return jobs

    def active_jobs(self) -> list[dict]:
        """Active jobs the poller drives: batch mode only (a `--now` job is run by its own process)."""
        jobs = self._all("SELECT * FROM jobs WHERE state=? AND mode!='now' ORDER BY created_at, rowid",
                         (JobState.ACTIVE,))
        for job in jobs:
            job["spec"] = json.loads(job["spec"])
        return jobs

    def claiming_jobs(self) -> list[dict]:
        """Jobs whose outputs are still to be written (active or blocked), for the one-job-per-output rule."""
        jobs = self._all("SELECT * FROM jobs WHERE state IN (?,?) ORDER BY created_at", (JobState.ACTIVE,
                                                                                         JobState.BLOCKED))
        for job in jobs:
            job["spec"] = json.loads(job["spec"])
        return jobs

    def job_output_paths(self, job_id: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT r.output_path FROM requests r JOIN intents i ON i.id=r.intent_id "
            "JOIN stages s ON s.id=i.stage_id WHERE s.job_id=?", (job_id,))}

    @staticmethod
    def _move(c: sqlite3.Connection, table: str, moves: dict, row_id: Any, to: Any, extra: str = "",
              args: tuple = (), *, only_from: Any = None) -> bool:
        """Compare-and-set a state: only from a state the engine allows to reach `to` (and, given
        only_from, only from that one)."""
        allowed = tuple(s for s in predecessors(moves, to) if only_from is None or s == str(only_from))
        marks = ",".join("?" * len(allowed))
        cur = c.execute(f"UPDATE {table} SET state=?{extra} WHERE id=? AND state IN ({marks})",
                        (str(to), *args, row_id, *allowed))
        return cur.rowcount == 1

    def move_job(self, job_id: str, to: JobState, *, reason: str | None = None, kind: str | None = None,
                 next_step: str | None = None) -> bool:
        """Move a job to `to` (finished_at set for a final state; a blocked job keeps its reason, its kind
        and the command that moves it on)."""
        finished = now_iso() if str(to) in TERMINAL_JOB_STATES else None
        with self.tx() as c:
            return self._move(c, "jobs", JOB_MOVES, job_id, to,
                              ", finished_at=?, blocked_reason=?, blocked_kind=?, blocked_next=?, outcomes=outcomes+?",
                              (finished, reason, kind, next_step, 1 if finished else 0))

    def running_estimates(self) -> list[dict]:
        """Unfinished jobs (active or blocked) with the estimate recorded at their submit: id, mode,
        estimate_usd (what they may still cost is that less what they have cost so far)."""
        return self._all("SELECT id, mode, estimate_usd FROM jobs WHERE state IN (?,?) AND estimate_usd IS NOT NULL",
                         (JobState.ACTIVE, JobState.BLOCKED))

    def request_cancel(self, job_id: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))

    def stages(self, job_id: str) -> list[dict]:
        rows = self._all("SELECT * FROM stages WHERE job_id=? ORDER BY seq", (job_id,))
        for row in rows:
            row["notes"] = json.loads(row["notes"]) if row["notes"] else []
        return rows

    def move_stage(self, stage_id: int, to: StageState, notes: list[str] | None = None) -> bool:
        with self.tx() as c:
            if notes is None:
                return self._move(c, "stages", STAGE_MOVES, stage_id, to)
            return self._move(c, "stages", STAGE_MOVES, stage_id, to, ", notes=?", (json.dumps(notes),))

    def record_job_file(self, job_id: str, path: str, stage_seq: int, sha256: str | None = None,
                        output_path: str | None = None) -> None:
        """A file the job wrote itself (a combined or assembled file), counted with its outputs, with what it
        held (so a later hand edit is kept) and, when written beside a hand-edited one, the file it was meant as."""
        with self.tx() as c:
            c.execute("INSERT INTO job_files(job_id, path, stage_seq, written_at, sha256, output_path) "
                      "VALUES(?,?,?,?,?,?) ON CONFLICT(job_id, path) DO UPDATE SET written_at=excluded.written_at, "
                      "sha256=excluded.sha256, output_path=excluded.output_path",
                      (job_id, path, stage_seq, now_iso(), sha256, output_path if output_path != path else None))

    def job_files(self, job_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM job_files WHERE job_id=? ORDER BY path", (job_id,))]

    # --- one logical step, one transaction ---------------------------------------------------------
    def _insert_intent(self, c: sqlite3.Connection, stage_id: int, intent: PlannedIntent, state: str) -> int:
        paths = [r[1] for r in intent.rows]
        cur = c.execute("INSERT INTO intents(stage_id, archive, request_count, byte_size, state, created_at, "
                        "first_output, last_output, tag) VALUES(?,?,?,?,?,?,?,?,?)",
                        (stage_id, intent.archive, len(intent.rows), intent.byte_size, state, now_iso(),
                         min(paths, default=None), max(paths, default=None), intent.tag))
        intent_id = int(cur.lastrowid or 0)
        sent = intent.sent_ids or [r[0] for r in intent.rows]
        c.executemany("INSERT INTO requests(intent_id, custom_id, output_path, model, max_tokens, attempt, sent_id) "
                      "VALUES(?,?,?,?,?,?,?)", [(intent_id, *r[:4], r[4] if len(r) > 4 else 1, sid)
                                                for r, sid in zip(intent.rows, sent, strict=True)])
        models: dict[str, int] = {}
        for r in intent.rows:
            models[r[2] or ""] = models.get(r[2] or "", 0) + 1
        c.executemany("INSERT INTO intent_counts(intent_id, model, requests, open, latest_open) VALUES(?,?,?,?,?)",
                      [(intent_id, m, n, n, n) for m, n in models.items()])
        if intent.replaces:
            replaced = [old_id for old_id, _cid in intent.replaces]
            before = self._count_sums(c, replaced)  # the old attempts stop being the latest
            c.executemany("UPDATE requests SET retried_by=? WHERE id=? AND retried_by IS NULL",
                          [(intent_id, old_id) for old_id in replaced])
            self._apply_counts(c, before, self._count_sums(c, replaced))
        return intent_id

    def record_stage(self, stage_id: int, intents: list[PlannedIntent], notes: list[str], *,
                     intent_state: IntentState = IntentState.OPEN, held: list[PlannedIntent] | None = None
                     ) -> list[int]:
        """Record a stage's intents with their requests and mark the stage submitted: one transaction, so a
        crash leaves either nothing (the stage is built again) or all of it (the poller sends it).

        `held` intents (cache priming) are recorded `held`: sent once the others have finished. Returns
        the ids of `intents` (to send now)."""
        with self.tx() as c:
            ids = [self._insert_intent(c, stage_id, intent, intent_state) for intent in intents]
            for intent in held or []:
                self._insert_intent(c, stage_id, intent, IntentState.HELD)
            if not self._move(c, "stages", STAGE_MOVES, stage_id, StageState.SUBMITTED, ", notes=?",
                              (json.dumps(notes),)):
                raise RuntimeError(f"stage {stage_id} was moved by another process while it was built")
            return ids

    def record_retry(self, job_id: str, by_stage: dict[int, list[PlannedIntent]], *,
                     intent_state: IntentState = IntentState.OPEN) -> list[int]:
        """Record resubmissions (stage id → intents replacing failed attempts) in one transaction: the new
        attempts, the old ones marked retried, the earliest of their stages submitted again, every later
        stage reopened (rebuilt for exactly what is missing once the earlier ones settle, even when it has
        resubmissions of its own: a failure upstream left some of its requests unplanned) and the job
        active again."""
        with self.tx() as c:
            ids = []
            seqs = {r[0]: r[1] for r in c.execute("SELECT id, seq FROM stages WHERE job_id=?", (job_id,))}
            first = min(seqs[s] for s in by_stage)
            for stage_id, intents in by_stage.items():
                ids += [self._insert_intent(c, stage_id, intent, intent_state) for intent in intents]
            for stage_id, seq in seqs.items():
                if seq == first:
                    self._move(c, "stages", STAGE_MOVES, stage_id, StageState.SUBMITTED)
                elif seq > first:
                    self._move(c, "stages", STAGE_MOVES, stage_id, StageState.WAITING)
            self._move(c, "jobs", JOB_MOVES, job_id, JobState.ACTIVE,
                       ", finished_at=NULL, blocked_reason=NULL, blocked_kind=NULL, blocked_next=NULL")
            return ids

    def adopt_batch(self, job_id: str, kind: str, title: str, spec: dict, data_root: str, stage_name: str,
                    batch: dict, notes: list[str]) -> tuple[str, bool]:
        """Record a batch created elsewhere (the old scripts) as a one-stage job whose requests are learned
        from its results (`learn_requests`): the job, its stage moved to submitted, an intent moved to
        created and the batch, in one transaction. Idempotent: a batch already recorded gives its job.
        Return (job id, whether it was recorded now)."""
        with self.tx() as c:
            known = c.execute("SELECT s.job_id FROM batches b JOIN intents i ON i.id=b.intent_id JOIN stages s "
                              "ON s.id=i.stage_id WHERE b.id=?", (batch["id"],)).fetchone()
            if known:
                return known[0], False
            c.execute("INSERT INTO jobs(id, kind, title, spec, data_root, mode, state, created_at) "
                      "VALUES(?,?,?,?,?,?,?,?)",
                      (job_id, kind, title, json.dumps(spec), data_root, "batch", JobState.ACTIVE, now_iso()))
            stage_id = c.execute("INSERT INTO stages(job_id, seq, name, state) VALUES(?,?,?,?)",
                                 (job_id, 0, stage_name, StageState.WAITING)).lastrowid
            intent_id = self._insert_intent(c, int(stage_id or 0), PlannedIntent("", 0), IntentState.OPEN)
            c.execute("UPDATE intents SET request_count=?, attempted_at=created_at WHERE id=?",
                      (sum(batch["request_counts"].values()), intent_id))
            moved = (self._move(c, "stages", STAGE_MOVES, stage_id, StageState.SUBMITTED, ", notes=?",
                                (json.dumps(notes),))
                     and self._move(c, "intents", INTENT_MOVES, intent_id, IntentState.CREATED, ", batch_id=?",
                                    (batch["id"],)))
            if not moved:
                raise RuntimeError(f"adopting batch {batch['id']}: a state move was refused (a bug)")
            c.execute("INSERT INTO batches(id, intent_id, created_at, expires_at, api_status, local_state, processing) "
                      "VALUES(?,?,?,?,?,?,?)", (batch["id"], intent_id, batch["created_at"], batch.get("expires_at"),
                                                batch["processing_status"], BatchState.SUBMITTED,
                                                batch["request_counts"]["processing"]))
            self._apply_status(c, batch)
            return job_id, True

    def learn_requests(self, intent_id: int, rows: list[tuple[str, str, str | None]]) -> None:
        """Record requests an adopted batch holds, as its results name them: (custom_id, output path, model).
        One already recorded is left as it is."""
        with self.tx() as c:
            for custom_id, output_path, model in rows:
                cur = c.execute("INSERT OR IGNORE INTO requests(intent_id, custom_id, output_path, model, attempt, "
                                "sent_id) VALUES(?1,?2,?3,?4,1,?2)", (intent_id, custom_id, output_path, model))
                if cur.rowcount:
                    c.execute("INSERT INTO intent_counts(intent_id, model, requests, open, latest_open) "
                              "VALUES(?,?,1,1,1) ON CONFLICT(intent_id, model) DO UPDATE SET requests=requests+1, "
                              "open=open+1, latest_open=latest_open+1", (intent_id, model or ""))
                    c.execute("UPDATE intents SET first_output=min(coalesce(first_output, ?1), ?1), "
                              "last_output=max(coalesce(last_output, ?1), ?1) WHERE id=?2", (output_path, intent_id))

    def reopen_job(self, job_id: str) -> bool:
        """A blocked (or finished) job goes on: active again, its reason cleared."""
        with self.tx() as c:
            return self._move(c, "jobs", JOB_MOVES, job_id, JobState.ACTIVE,
                              ", finished_at=NULL, blocked_reason=NULL, blocked_kind=NULL, blocked_next=NULL")

    def resume_job(self, job_id: str, max_cost_usd: float | None) -> bool:
        """A blocked job goes on, with a new limit of its own if given (which also lets it past the monthly
        budget, up to that figure): one transaction."""
        with self.tx() as c:
            extra = ", finished_at=NULL, blocked_reason=NULL, blocked_kind=NULL, blocked_next=NULL"
            args: tuple[Any, ...] = ()
            if max_cost_usd is not None:
                extra, args = extra + ", max_cost_usd=?, past_monthly=1", (max_cost_usd,)
            assert JobState.ACTIVE in JOB_MOVES[JobState.BLOCKED]
            cur = c.execute(f"UPDATE jobs SET state=?{extra} WHERE id=? AND state=?",
                            (str(JobState.ACTIVE), *args, job_id, str(JobState.BLOCKED)))
            return cur.rowcount == 1

    def job_view_rows(self, job_id: str) -> tuple[list[dict], list[dict]]:
        """(stages, intents with their batch state and unsettled request count) of a job, for the engine."""
        stages = self.stages(job_id)
        intents = self._all(
            "SELECT i.id, i.stage_id, i.state, b.local_state AS batch_state,"
            " (SELECT count(*) FROM requests r WHERE r.intent_id=i.id AND r.outcome IS NULL) AS unsettled"
            " FROM intents i JOIN stages s ON s.id=i.stage_id LEFT JOIN batches b ON b.intent_id=i.id"
            " WHERE s.job_id=? ORDER BY i.id", (job_id,))
        return stages, intents

    def latest_failures(self, job_id: str) -> list[dict]:
        """The latest attempt of each output of a job that failed and is not being retried, with what a
        resubmission needs (archive, stage, batch, whether the person canceled its batch)."""
        latest_failed = " AND ".join(f"r.{term}" for term in _LATEST_FAILED.split(" AND "))
        return self._all(
            f"SELECT {_FAILED_COLUMNS}, i.archive, i.stage_id, i.batch_id, s.seq AS stage_seq, s.name AS stage_name,"
            " coalesce(b.canceled_by_user, 0) AS user_canceled FROM requests r"
            " JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id"
            " LEFT JOIN batches b ON b.intent_id=i.id"
            f" WHERE s.job_id=? AND {latest_failed} ORDER BY r.id", (job_id,))  # read from requests_failed only

    def truncated_outputs(self, job_id: str) -> list[dict]:
        """The latest successful attempts of a job that stopped at max_tokens."""
        return self._all(
            "SELECT r.*, i.archive, i.stage_id, s.seq AS stage_seq, s.name AS stage_name FROM requests r"
            " JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id"
            " WHERE s.job_id=? AND r.retried_by IS NULL AND r.outcome=? AND r.stop_reason='max_tokens'"
            " ORDER BY r.id", (job_id, Outcome.SUCCEEDED))

    def truncated_custom_ids(self, job_id: str) -> list[str]:
        """custom_ids of the latest successful attempts of a job that stopped at max_tokens (no row dicts:
        every answer of a batch may be cut)."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return [r[0] for r in cur.execute(
            "SELECT r.custom_id FROM requests r JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id"
            " WHERE s.job_id=? AND r.retried_by IS NULL AND r.outcome=? AND r.stop_reason='max_tokens' ORDER BY r.id",
            (job_id, Outcome.SUCCEEDED))]

    def job_counts(self, job_id: str) -> dict[str, int]:
        """Outputs of a job by their latest attempt: written, failed, in flight; files assembled; attempts.

        Read from intent_counts (kept in the transactions that record outcomes and retries): no request row
        is read, whatever the job's size."""
        row = self.conn.execute(
            "SELECT coalesce(sum(c.latest_succeeded), 0), coalesce(sum(c.latest_failed), 0),"
            " coalesce(sum(c.latest_open), 0), (SELECT count(*) FROM job_files f WHERE f.job_id=?),"
            " coalesce(sum(c.requests), 0), coalesce(sum(c.latest_truncated), 0)"
            " FROM intent_counts c JOIN intents i ON i.id=c.intent_id JOIN stages s ON s.id=i.stage_id"
            " WHERE s.job_id=?", (job_id, job_id)).fetchone()
        return {"written": row[0], "failed": row[1], "in_flight": row[2], "assembled": row[3], "attempts": row[4],
                "truncated": row[5]}

    def job_output_spans(self, job_id: str) -> list[tuple[int, str, str, str | None, str | None]]:
        """(stage seq, least and greatest output path, least and greatest written one) of each intent of a job
        that has requests: the folders a job writes to, from one row per intent."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT s.seq, i.first_output, i.last_output, i.first_written, i.last_written FROM intents i "
            "JOIN stages s ON s.id=i.stage_id WHERE s.job_id=? AND i.first_output IS NOT NULL ORDER BY i.id",
            (job_id,))]

    # --- intents (recorded before create) and batches ---------------------------------------------
    def mark_attempted(self, intent_id: int) -> None:
        """Recorded just before a create is sent: from now on the intent may exist on the API, so it is
        reconciled (looked for) before it is ever sent again; a never-attempted one is simply sent."""
        with self.tx() as c:
            c.execute("UPDATE intents SET attempted_at=? WHERE id=? AND attempted_at IS NULL", (now_iso(), intent_id))

    def get_intent(self, intent_id: int) -> dict | None:
        return self._one("SELECT * FROM intents WHERE id=?", (intent_id,))

    def open_intents(self, job_id: str | None = None, *, moving_only: bool = False) -> list[dict]:
        """Open intents (all, or a job's); moving_only leaves out those of jobs that wait for the person."""
        sql = ("SELECT i.*, s.job_id FROM intents i JOIN stages s ON s.id=i.stage_id JOIN jobs j ON j.id=s.job_id "
               "WHERE i.state=?")
        args: list[Any] = [IntentState.OPEN]
        if moving_only:
            sql += " AND j.state NOT IN (?,?)"
            args += [JobState.BLOCKED, JobState.CANCELED]
        if job_id is not None:
            sql += " AND s.job_id=?"
            args.append(job_id)
        return self._all(sql + " ORDER BY i.id", args)

    def intents_of_stage(self, stage_id: int) -> list[dict]:
        return self._all("SELECT * FROM intents WHERE stage_id=? ORDER BY id", (stage_id,))

    def attach_batch(self, intent_id: int, batch: dict, *, reconciled: bool = False) -> None:
        """Record the batch an intent created (or, reconciled, was matched with: its results are verified
        before anything of it is written). Idempotent."""
        with self.tx() as c:
            if not self._move(c, "intents", INTENT_MOVES, intent_id, IntentState.CREATED, ", batch_id=?, error=NULL",
                              (batch["id"],)):
                return
            c.execute(
                "INSERT OR IGNORE INTO batches(id, intent_id, created_at, expires_at, api_status, local_state, "
                "processing, next_poll_at, reconciled) VALUES(?,?,?,?,?,?,?,?,?)",
                (batch["id"], intent_id, batch["created_at"], batch.get("expires_at"), batch["processing_status"],
                 BatchState.SUBMITTED, batch["request_counts"]["processing"], None, int(reconciled)))
            self._apply_status(c, batch)

    def release_intent(self, intent_id: int) -> bool:
        """A held intent becomes open (sent next, by this process or the poller). Compare-and-set."""
        with self.tx() as c:
            return self._move(c, "intents", INTENT_MOVES, intent_id, IntentState.OPEN, only_from=IntentState.HELD)

    def mark_verified(self, batch_id: str) -> None:
        """An adopted batch's results carry exactly its intent's custom_ids: it is ours."""
        with self.tx() as c:
            c.execute("UPDATE batches SET verified_at=? WHERE id=?", (now_iso(), batch_id))

    def disown_batch(self, batch_id: str, reason: str) -> int | None:
        """An adopted batch proved not ours: recorded as foreign to its intent (never adopted by it again),
        forgotten as its batch, and the intent open again (sent by the next poll). One transaction; nothing
        of its results was recorded. Return the intent id (None: not an unverified adopted batch)."""
        with self.tx() as c:
            row = c.execute("SELECT intent_id, created_at FROM batches WHERE id=? AND reconciled=1 AND verified_at IS NULL",
                            (batch_id,)).fetchone()
            if row is None:
                return None
            intent_id = row[0]
            c.execute("INSERT OR IGNORE INTO foreign_batches(batch_id, intent_id, created_at, found_at, reason) "
                      "VALUES(?,?,?,?,?)", (batch_id, intent_id, row[1], now_iso(), reason))
            c.execute("DELETE FROM batches WHERE id=?", (batch_id,))
            if not self._move(c, "intents", INTENT_MOVES, intent_id, IntentState.OPEN, ", batch_id=NULL",
                              only_from=IntentState.CREATED):
                raise RuntimeError(f"intent {intent_id} of batch {batch_id} is not created")
            return intent_id

    def foreign_batch_ids(self, intent_id: int) -> set[str]:
        """Batches found not to be this intent's (reconcile never adopts them for it again)."""
        return {r[0] for r in self.conn.execute("SELECT batch_id FROM foreign_batches WHERE intent_id=?", (intent_id,))}

    def sent_ids_of_intent(self, intent_id: int) -> set[str]:
        """The custom_ids an intent's create carries."""
        return {r[0] for r in self.conn.execute("SELECT sent_id FROM requests WHERE intent_id=?", (intent_id,))}

    def fail_intent(self, intent_id: int, error: str, error_type: str) -> None:
        """An intent refused for good: its requests become failures carrying the reason."""
        with self.tx() as c:
            self._move(c, "intents", INTENT_MOVES, intent_id, IntentState.FAILED, ", error=?", (error,))
            before = self._intent_sums(c, intent_id)
            c.execute("UPDATE requests SET outcome=?, error_type=?, error_message=? WHERE intent_id=? "
                      "AND outcome IS NULL", (Outcome.ERRORED, error_type, error[:500], intent_id))
            self._apply_counts(c, before, self._intent_sums(c, intent_id))

    def known_batch_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM batches")}

    def get_batch(self, batch_id: str) -> dict | None:
        return self._one(
            "SELECT b.*, i.stage_id, i.archive, i.request_count, i.tag, s.job_id, s.name AS stage_name, "
            "s.seq AS stage_seq "
            "FROM batches b JOIN intents i ON i.id=b.intent_id JOIN stages s ON s.id=i.stage_id WHERE b.id=?",
            (batch_id,))

    def find_batches(self, prefix: str) -> list[str]:
        """Batch ids starting with prefix (people shorten ids)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.conn.execute("SELECT id FROM batches WHERE id LIKE ? ESCAPE '\\'",
                                                (escaped + "%",))]

    def find_jobs(self, prefix: str) -> list[str]:
        """Job ids starting with prefix."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.conn.execute("SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\'",
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
            "JOIN stages s ON s.id=i.stage_id WHERE b.local_state IN (?,?) "
            "ORDER BY b.created_at", (BatchState.SUBMITTED, BatchState.RETRIEVING))

    def has_pending(self) -> bool:
        """Anything the daemon must poll: unretrieved batches, open intents or active batch-mode jobs."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM batches WHERE local_state IN (?,?))"
            " + (SELECT count(*) FROM intents WHERE state=?)"
            " + (SELECT count(*) FROM jobs WHERE state=? AND mode!='now')",
            (BatchState.SUBMITTED, BatchState.RETRIEVING, IntentState.OPEN, JobState.ACTIVE)).fetchone()
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

    def move_batch(self, batch_id: str, to: BatchState, error: str | None = None) -> bool:
        retrieved = now_iso() if to == BatchState.RETRIEVED else None
        allowed = predecessors(BATCH_MOVES, to)
        with self.tx() as c:
            cur = c.execute(f"UPDATE batches SET local_state=?, error=?, retrieved_at=coalesce(?, retrieved_at) "
                            f"WHERE id=? AND local_state IN ({','.join('?' * len(allowed))})",
                            (str(to), error, retrieved, batch_id, *allowed))
            return cur.rowcount == 1

    def settle_batch(self, batch_id: str, error_type: str, message: str) -> None:
        """A batch whose results can no longer be had (archived, unknown to the API): every request of it
        without an outcome becomes a failure of that kind (retry resends them), and the batch is settled."""
        allowed = predecessors(BATCH_MOVES, BatchState.RETRIEVED)
        with self.tx() as c:
            intent = c.execute("SELECT intent_id FROM batches WHERE id=?", (batch_id,)).fetchone()
            before = self._intent_sums(c, intent[0]) if intent else {}
            c.execute("UPDATE requests SET outcome=?, error_type=?, error_message=? WHERE outcome IS NULL AND "
                      "intent_id=(SELECT intent_id FROM batches WHERE id=?)",
                      (Outcome.ERRORED, error_type, message[:500], batch_id))
            if intent:
                self._apply_counts(c, before, self._intent_sums(c, intent[0]))
            c.execute(f"UPDATE batches SET local_state=?, error=?, retrieved_at=? WHERE id=? AND local_state IN "
                      f"({','.join('?' * len(allowed))})",
                      (BatchState.RETRIEVED, message, now_iso(), batch_id, *allowed))

    def mark_canceled_by_user(self, batch_id: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE batches SET canceled_by_user=1 WHERE id=?", (batch_id,))

    def note_missing(self, batch_id: str, since: str | None) -> tuple[str | None, int]:
        """Record whether the API knew a batch at this poll (since: when it was first found missing; None: it
        is known again); return (missing since, polls it has been missing)."""
        with self.tx() as c:
            if since is None:
                c.execute("UPDATE batches SET missing_since=NULL, missing_polls=0 WHERE id=?", (batch_id,))
            else:
                c.execute("UPDATE batches SET missing_since=coalesce(missing_since, ?), missing_polls=missing_polls+1 "
                          "WHERE id=?", (since, batch_id))
            row = c.execute("SELECT missing_since, missing_polls FROM batches WHERE id=?", (batch_id,)).fetchone()
            return (row[0], row[1]) if row else (None, 0)

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

    def retrieval_lookup(self, intent_id: int, custom_ids: list[str]) -> dict[str, RetrievalRow]:
        """sent custom_id → RetrievalRow for a few custom_ids of one intent as the results carry them
        (retrieval looks results up in groups instead of holding a map of the whole batch)."""
        cur = self.conn.cursor()
        cur.row_factory = None
        out: dict[str, RetrievalRow] = {}
        for start in range(0, len(custom_ids), 500):
            part = custom_ids[start:start + 500]
            cur.execute("SELECT sent_id, id, output_path, outcome IS NOT NULL, written_at IS NOT NULL FROM requests "
                        f"WHERE intent_id=? AND sent_id IN ({','.join('?' * len(part))})", (intent_id, *part))
            for cid, rid, path, done, written in cur:
                out[cid] = RetrievalRow(rid, path, bool(done), bool(written))
        return out

    def written_of_intent(self, intent_id: int) -> Iterator[tuple[int, str]]:
        """(request id, output path) of each request of an intent recorded as written, streamed."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute("SELECT id, output_path FROM requests WHERE intent_id=? AND written_at IS NOT NULL",
                           (intent_id,))

    def intent_open_count(self, intent_id: int) -> tuple[int, int]:
        """(requests, those without an outcome yet) of an intent."""
        return tuple(self.conn.execute("SELECT count(*), coalesce(sum(outcome IS NULL), 0) FROM requests "
                                       "WHERE intent_id=?", (intent_id,)).fetchone())

    def mark_missing(self, intent_id: int) -> int:
        """Record every request of an intent still without an outcome as errored/missing_result; return how many."""
        cur = self.conn.cursor()
        cur.row_factory = None
        ids = [r[0] for r in cur.execute("SELECT id FROM requests WHERE intent_id=? AND outcome IS NULL", (intent_id,))]
        if ids:
            self.record_results([{"id": i, "outcome": Outcome.ERRORED, "error_type": MISSING_RESULT,
                                  "error_message": "no result line for this request"} for i in ids])
        return len(ids)

    def recorded_shas(self, output_path: str) -> set[str]:
        """Every sha256 this store recorded for an output path (any job, any attempt). Safe from any
        thread: it reads through a connection of its own."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = _connect(self.path)
            return {r[0] for r in self._reader.execute(
                "SELECT output_sha256 FROM requests WHERE output_path=?1 AND output_sha256 IS NOT NULL UNION "
                "SELECT sha256 FROM job_files WHERE coalesce(output_path, path)=?1 AND sha256 IS NOT NULL",
                (output_path,))}

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
                  "cache_read_tokens", "cache_write_1h_tokens", "thinking_tokens", "stop_reason", "output_sha256",
                  "written_at")
        ids = [r["id"] for r in results]
        values = operator.itemgetter(*fields, "id")  # every field present: one C call per row
        rows = []
        for r in results:
            try:
                rows.append(values(r))
            except KeyError:
                rows.append(tuple(r.get(f) for f in fields) + (r["id"],))
        with self.tx() as c:
            before = self._count_sums(c, ids)
            c.executemany(f"UPDATE requests SET {', '.join(f'{f}=?' for f in fields)} WHERE id=?", rows)
            self._apply_counts(c, before, self._count_sums(c, ids))
            self._widen_written(c, [r["id"] for r in results if r.get("outcome") == Outcome.SUCCEEDED])

    @staticmethod
    def _widen_written(c: sqlite3.Connection, ids: list[int]) -> None:
        """Widen each intent's span of written outputs (first_written..last_written) to these successes."""
        cur = c.cursor()
        cur.row_factory = None
        spans = []
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            spans += cur.execute(f"SELECT min(output_path), max(output_path), intent_id FROM requests "
                                 f"WHERE id IN ({','.join('?' * len(part))}) GROUP BY intent_id", part).fetchall()
        c.executemany("UPDATE intents SET first_written=min(coalesce(first_written, ?1), ?1), "
                      "last_written=max(coalesce(last_written, ?2), ?2) WHERE id=?3", spans)

    @staticmethod
    def _count_sums(c: sqlite3.Connection, ids: list[int]) -> dict[tuple[int, str], tuple]:
        """(intent_id, model) → what these requests add to intent_counts now (summed by SQLite)."""
        out: dict[tuple[int, str], tuple] = {}
        cur = c.cursor()
        cur.row_factory = None
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            cur.execute(f"SELECT intent_id, coalesce(model, ''), {_SUMS} FROM requests "
                        f"WHERE id IN ({','.join('?' * len(part))}) GROUP BY 1, 2", part)
            for intent_id, model, *sums in cur:
                old = out.get((intent_id, model))
                out[(intent_id, model)] = tuple(sums) if old is None else tuple(
                    x + y for x, y in zip(old, sums, strict=True))
        return out

    @staticmethod
    def _intent_sums(c: sqlite3.Connection, intent_id: int) -> dict[tuple[int, str], tuple]:
        """Like _count_sums, for every request of one intent."""
        cur = c.cursor()
        cur.row_factory = None
        cur.execute(f"SELECT intent_id, coalesce(model, ''), {_SUMS} FROM requests WHERE intent_id=? GROUP BY 1, 2",
                    (intent_id,))
        return {(i, m): tuple(sums) for i, m, *sums in cur}

    @staticmethod
    def _apply_counts(c: sqlite3.Connection, before: dict, after: dict) -> None:
        """Add the change between two sums of the same requests to intent_counts (same transaction)."""
        zero = (0,) * len(_COUNTED)
        changes = []
        for key in before.keys() | after.keys():
            delta = [n - o for n, o in zip(after.get(key, zero), before.get(key, zero), strict=True)]
            if any(delta):
                changes.append((*delta, *key))
        sets = ", ".join(f"{col}={col}+?" for col in _COUNTED)
        c.executemany(f"UPDATE intent_counts SET {sets} WHERE intent_id=? AND model=?", changes)

    def forget_written(self, request_ids: list[int]) -> None:
        """Clear records whose file went missing, so the next retrieval writes them again."""
        with self.tx() as c:
            before = self._count_sums(c, request_ids)
            c.executemany("UPDATE requests SET outcome=NULL, output_sha256=NULL, written_at=NULL WHERE id=?",
                          [(i,) for i in request_ids])
            self._apply_counts(c, before, self._count_sums(c, request_ids))

    def job_request_count(self, job_id: str) -> int:
        """How many requests a job has recorded (every attempt)."""
        return self.conn.execute(
            "SELECT count(*) FROM requests r JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id "
            "WHERE s.job_id=?", (job_id,)).fetchone()[0]

    def job_requests(self, job_id: str) -> list[dict]:
        """Every request of a job with its batch id and stage."""
        return self._all(
            "SELECT r.*, i.batch_id, s.seq AS stage_seq, s.name AS stage_name FROM requests r "
            "JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id WHERE s.job_id=? "
            "ORDER BY r.id", (job_id,))

    def job_written_outputs(self, job_id: str) -> Iterator[tuple[int, str]]:
        """(stage seq, output path) of each successful request of a job, streamed."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(
            "SELECT s.seq, r.output_path FROM requests r JOIN intents i ON i.id=r.intent_id "
            "JOIN stages s ON s.id=i.stage_id WHERE s.job_id=? AND r.outcome='succeeded'", (job_id,))

    def usage_by_model(self, *, job_id: str | None = None, batch_id: str | None = None) -> list[dict]:
        """Summed usage per model for a job or a batch (from intent_counts: no request row is read)."""
        where, arg = ("i.batch_id=?", batch_id) if batch_id else ("s.job_id=?", job_id)
        rows = self._all(
            "SELECT c.model, sum(c.input) AS input, sum(c.output) AS output, sum(c.cache_write) AS cache_write, "
            "sum(c.cache_read) AS cache_read FROM intent_counts c JOIN intents i ON i.id=c.intent_id "
            f"JOIN stages s ON s.id=i.stage_id WHERE {where} GROUP BY c.model", (arg,))
        for row in rows:
            row["model"] = row["model"] or None
        return rows

    def usage_receipts(self, *, job_id: str | None = None, batch_id: str | None = None,
                       since: str | None = None) -> list[dict]:
        """Summed usage per job, stage, model and day the batch ran (from intent_counts: no request row is
        read), with the job's mode: what a receipt is priced from. `since`: an ISO day, batches run from it."""
        clauses, args = ["(c.input + c.output + c.cache_write + c.cache_read) > 0"], []
        if batch_id is not None:  # (its intent found through batches' key first: intents.batch_id has no index)
            clauses += ["c.intent_id IN (SELECT intent_id FROM batches WHERE id=?)", "i.batch_id=?"]
            args += [batch_id, batch_id]
        if job_id is not None:
            clauses.append("s.job_id=?")
            args.append(job_id)
        day = _BATCH_DAY
        if since is not None:
            clauses.append(f"{day} >= ?")
            args.append(since)
        return self._all(
            f"SELECT s.job_id, j.title, j.mode, s.name AS stage, s.seq, c.model, {day} AS day, "
            "sum(c.requests - c.open) AS requests, sum(c.input) AS input, sum(c.output) AS output, "
            "sum(c.cache_write) AS cache_write, sum(c.cache_write_1h) AS cache_write_1h, "
            "sum(c.cache_read) AS cache_read, sum(c.thinking) AS thinking "
            "FROM intent_counts c JOIN intents i ON i.id=c.intent_id JOIN stages s ON s.id=i.stage_id "
            "JOIN jobs j ON j.id=s.job_id LEFT JOIN batches b ON b.intent_id=i.id "
            f"WHERE {' AND '.join(clauses)} GROUP BY s.job_id, s.seq, c.model, {day} ORDER BY {day}, s.job_id, s.seq",
            args)

    def request_receipts(self, job_id: str, since: str | None = None) -> Iterator[dict]:
        """Each request attempt of a job that reported usage, in the shape of usage_receipts rows (one
        request each, with its custom_id and attempt), in the order sent: a job's receipt per request."""
        day = _BATCH_DAY
        sql = (f"SELECT s.job_id, j.title, j.mode, s.name AS stage, s.seq, r.model, {day} AS day, r.custom_id, "
               "r.attempt, 1 AS requests, coalesce(r.input_tokens, 0) AS input, coalesce(r.output_tokens, 0) AS output, "
               "coalesce(r.cache_write_tokens, 0) AS cache_write, coalesce(r.cache_write_1h_tokens, 0) AS "
               "cache_write_1h, coalesce(r.cache_read_tokens, 0) AS cache_read, coalesce(r.thinking_tokens, 0) AS "
               "thinking FROM requests r JOIN intents i ON i.id=r.intent_id JOIN stages s ON s.id=i.stage_id "
               "JOIN jobs j ON j.id=s.job_id LEFT JOIN batches b ON b.intent_id=i.id WHERE s.job_id=? AND "
               "(coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) + coalesce(r.cache_write_tokens, 0) "
               "+ coalesce(r.cache_read_tokens, 0)) > 0")
        args: list[Any] = [job_id]
        if since is not None:
            sql += f" AND {day} >= ?"
            args.append(since)
        cur = self.conn.execute(sql + " ORDER BY r.id", args)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def batch_outcome_counts(self, batch_id: str) -> dict[str, int]:
        """outcome (or 'pending') → requests of a batch, and 'written' (from intent_counts)."""
        row = self.conn.execute(
            "SELECT sum(c.open), sum(c.succeeded), sum(c.errored), sum(c.canceled), sum(c.expired), sum(c.written) "
            "FROM intent_counts c JOIN batches b ON b.intent_id=c.intent_id WHERE b.id=?", (batch_id,)).fetchone()
        out = {k: v for k, v in zip(("pending", *_OUTCOMES), row[:5], strict=True) if v}
        out["written"] = row[5] or 0
        return out

    # --- health (doctor) ---------------------------------------------------------------------------
    def integrity(self) -> tuple[list[str], int]:
        """PRAGMA quick_check's findings (["ok"] when sound; at most 10 lines) and the bytes the database
        takes on disk, its WAL included."""
        findings = [r[0] for r in self.conn.execute("PRAGMA quick_check(10)")]
        size = sum(os.path.getsize(f"{self.path}{suffix}") for suffix in ("", "-wal")
                   if os.path.exists(f"{self.path}{suffix}"))
        return findings, size

    def pending_overview(self) -> dict[str, Any]:
        """What waits: active and blocked jobs (id, title, state, reason), open intents, unretrieved batches
        and the earliest next poll among those still running on the API."""
        jobs = self._all("SELECT id, title, state, blocked_reason, blocked_kind, blocked_next FROM jobs "
                         "WHERE state IN (?,?) ORDER BY created_at",
                         (JobState.ACTIVE, JobState.BLOCKED))
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM intents WHERE state=?),"
            " (SELECT count(*) FROM batches WHERE local_state IN (?,?)),"
            " (SELECT count(*) FROM batches WHERE local_state IN (?,?) AND api_status='ended'),"
            " (SELECT min(coalesce(next_poll_at, created_at)) FROM batches WHERE local_state IN (?,?)"
            "  AND api_status!='ended')",
            (IntentState.OPEN, BatchState.SUBMITTED, BatchState.RETRIEVING, BatchState.SUBMITTED,
             BatchState.RETRIEVING, BatchState.SUBMITTED, BatchState.RETRIEVING)).fetchone()
        return {"jobs": jobs, "open_intents": row[0], "batches": row[1], "ended_unretrieved": row[2],
                "next_poll_at": row[3]}

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
