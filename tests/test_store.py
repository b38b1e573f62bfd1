"""The state store: migrations, concurrent writers, refusing what it does not understand."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from tegbatchd import store as store_mod
from tegbatchd.store import SCHEMA_VERSION, Store, StoreError


def _tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_blank_database_gets_every_migration_and_private_mode(tmp_path):
    path = tmp_path / "state.db"
    s = Store.open(path)
    assert s.schema_version == SCHEMA_VERSION == len(store_mod.MIGRATIONS)
    assert {"jobs", "stages", "intents", "batches", "requests", "events", "notices", "kv"} <= _tables(path)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    s.close()


@pytest.mark.parametrize("old_version", range(1, SCHEMA_VERSION))
def test_migrates_from_each_older_version_keeping_data(tmp_path, monkeypatch, old_version):
    path = tmp_path / "state.db"
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", old_version)
    old = Store.open(path)
    assert old.schema_version == old_version
    old.create_job("job_1", "requests", "t", {"a": 1}, "/data", ["requests"])
    old.close()
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(store_mod.MIGRATIONS))
    new = Store.open(path)
    assert new.schema_version == len(store_mod.MIGRATIONS)
    assert new.get_job("job_1")["spec"] == {"a": 1}
    assert new.add_notice("k", "job_done", "title", "body") is True
    new.close()


def test_newer_schema_is_refused_and_untouched(tmp_path):
    path = tmp_path / "state.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES(?,?,?)", (SCHEMA_VERSION + 1, "future", "now"))
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer tegbatchd"):
        Store.open(path)
    assert path.read_bytes() == before


def test_corrupt_database_is_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        Store.open(path)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something(x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a tegbatchd state database"):
        Store.open(path)


def _writer(path, tag, n, errors):
    try:
        s = Store.open(path)
        for i in range(n):
            s.add_event("test", f"{tag}-{i}")
            s.kv_set(f"{tag}", str(i))
            s.add_notice(f"{tag}-{i}", "test", "t", "b")
        s.close()
    except Exception as exc:  # noqa: BLE001
        errors.put(repr(exc))


def test_two_processes_writing_at_once_never_fail(tmp_path):
    path = tmp_path / "state.db"
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, tag, 300, errors)) for tag in ("cli", "daemon", "third")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert errors.empty(), errors.get()
    s = Store.open(path)
    assert len(s.events(kind="test")) == 900
    assert len(s.notices()) == 900
    assert s.kv_get("cli") == s.kv_get("daemon") == "299"


# A real process that imports everything, says "ready", waits for one byte on stdin, then opens the
# state store as every command does first: two released together create a brand-new database at once.
_OPENER = """
import sys
from tegbatchd.context import Context
from tegbatchd.errors import UserError
import tegbatchd.store
print("ready", flush=True)
sys.stdin.read(1)
try:
    Context().store.close()
except UserError as exc:
    sys.exit(exc.render())
"""


def test_thirty_pairs_of_processes_creating_the_database_at_once_all_succeed(tmp_path):
    def opener(home):
        env = {**os.environ, "TEGBATCHD_HOME": str(home), "TEGBATCHD_DATA_DIR": str(tmp_path)}
        return subprocess.Popen([sys.executable, "-c", _OPENER], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    homes = [tmp_path / f"home-{n}" for n in range(30)]
    pairs = [(opener(home), opener(home)) for home in homes]
    failures = []
    for home, pair in zip(homes, pairs, strict=True):
        for proc in pair:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in pair:  # released back to back: both find no database
            proc.stdin.write("x")
            proc.stdin.close()
        for proc in pair:
            proc.wait(timeout=120)
            err = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
            if proc.returncode != 0:
                failures.append(f"{home.name}: exit {proc.returncode}: {err.strip()[-300:]}")
        assert Store.open(home / "state" / "state.db").schema_version == SCHEMA_VERSION
    assert failures == []


def test_a_lock_held_past_the_busy_timeout_is_not_called_damage(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    Store.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # in WAL mode readers get in otherwise
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO kv VALUES('holder', 'x')")
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_MS", 200)
    try:
        with pytest.raises(StoreError) as caught:
            Store.open(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = caught.value.render()
    assert "locked by another tegbatchd process" in message and "not damaged" in message
    assert "move it aside" not in message
    assert Store.open(path).schema_version == SCHEMA_VERSION


def test_notice_is_queued_once_per_key(tmp_path):
    s = Store.open(tmp_path / "state.db")
    assert s.add_notice("job-done:1", "job_done", "ready", "body")
    assert not s.add_notice("job-done:1", "job_done", "ready", "body")
    assert [n["key"] for n in s.pending_notices()] == ["job-done:1"]
    s.mark_notice_delivered("job-done:1")
    assert s.pending_notices() == []


def test_two_submits_that_draw_the_same_job_id_get_two_jobs(tmp_path):
    """Job ids are the second and 16 random bits: two submits in one second may draw the same one. Found by
    the idle benchmark (50 quick submits): the second was refused as an unreadable database."""
    store = Store.open(tmp_path / "state.db")
    drawn = iter(["job_same", "job_same", "job_other"])
    first = store.create_job(lambda: next(drawn), "requests", "first", {}, "/data", ["requests"])
    second = store.create_job(lambda: next(drawn), "requests", "second", {}, "/data", ["requests"])
    assert (first, second) == ("job_same", "job_other")
    assert [(j["id"], j["title"]) for j in (store.get_job(first), store.get_job(second))] == [
        ("job_same", "first"), ("job_other", "second")]
    assert [len(store.stages(j)) for j in (first, second)] == [1, 1]
    with pytest.raises(StoreError, match="job id job_same is taken"):
        store.create_job("job_same", "requests", "third", {}, "/data", ["requests"])
    assert store.get_job("job_same")["title"] == "first"
