"""The state store: migrations, concurrent writers, refusing what it does not understand."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat

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


def test_notice_is_queued_once_per_key(tmp_path):
    s = Store.open(tmp_path / "state.db")
    assert s.add_notice("job-done:1", "job_done", "ready", "body")
    assert not s.add_notice("job-done:1", "job_done", "ready", "body")
    assert [n["key"] for n in s.pending_notices()] == ["job-done:1"]
    s.mark_notice_delivered("job-done:1")
    assert s.pending_notices() == []
