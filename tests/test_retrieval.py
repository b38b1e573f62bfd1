"""retrieval.py's groups: each group of files synced before it is recorded, by the recorder thread while
the next group is written; a sync that fails records nothing of its group and says so on one line."""

from __future__ import annotations

import errno
import threading

from tests.conftest import write_requests
from tests.reliability.support import assert_delivered, query

TEMPLATE = "commentary/misc/{custom_id}.md"


def test_each_group_is_synced_before_it_is_recorded_and_a_failed_sync_records_nothing(
        api_cli, tmp_path, data_root, _isolated_home, monkeypatch):
    from tegbatchd import retrieval
    from tegbatchd.store import Store
    from tegbatchd.writer import Writer

    cli, _ = api_cli("--process-seconds", "0")
    n = 2 * retrieval.GROUP + 200  # two full groups and a last one
    reqs = write_requests(tmp_path / "r.jsonl", n)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    db = _isolated_home / "state" / "state.db"
    log: list[tuple[str, str]] = []  # ("sync" | "record", thread name), in order
    real_sync, real_record = Writer.sync, Store.record_results

    def sync(self):
        log.append(("sync", threading.current_thread().name))
        if sum(1 for what, _ in log if what == "sync") == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_sync(self)

    def record(self, results):
        log.append(("record", threading.current_thread().name))
        real_record(self, results)

    monkeypatch.setattr(Writer, "sync", sync)
    monkeypatch.setattr(Store, "record_results", record)
    first = cli("retrieve", batch)
    assert first.code == 1 and "Input/output error" in first.err and f"tegbatchd retrieve {batch}" in first.err
    assert len(first.err.strip().splitlines()) <= 2, first.err  # the error and its next step, no traceback
    # the first group: synced, then recorded, by the recorder thread; the second's sync failed: nothing of it
    assert [what for what, _ in log] == ["sync", "record", "sync"]
    assert {name for _, name in log} == {"retrieval-recorder_0"}
    assert query(db, "SELECT count(*) FROM requests WHERE outcome IS NOT NULL") == [(retrieval.GROUP,)]

    monkeypatch.setattr(Writer, "sync", real_sync)
    log.clear()
    again = cli("retrieve", batch, check=True)
    assert f"Retrieved {n}/{n}" in again.out
    assert query(db, "SELECT count(*), sum(written_at IS NOT NULL) FROM requests WHERE outcome='succeeded'") == [
        (n, n)]
    assert [what for what, _ in log] == ["record", "record"]  # the rest: two groups (500 and 200), each synced
    assert_delivered(data_root / "commentary" / "misc", reqs, data_root)
