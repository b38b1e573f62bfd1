"""Unclear submit: the API made the batch but the answer never arrived. No second batch is created; the
next poll reconciles the intent with the batch that exists, and its results land."""

from __future__ import annotations

from tests.conftest import request_params, write_requests
from tests.reliability.support import assert_delivered, query

TEMPLATE = "commentary/{job}/{{custom_id}}.md"


def _config(home, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.yaml").write_text(text)


def test_dropped_connections_after_create_are_reconciled_not_resent(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop", "--unclear-create-count", "2")
    files = {}
    for job, prefix in (("a", "alpha"), ("b", "beta")):  # same request count: only the order tells them apart
        reqs = write_requests(tmp_path / f"{job}.jsonl", 12, prefix=prefix, max_tokens=40 + len(job))
        result = cli("submit", "requests", str(reqs), "--output", TEMPLATE.format(job=job), "--json")
        sub = result.json()
        assert result.code == 6 and sub["confirmed"] is False   # recorded, not confirmed: and it says so
        assert sub["batch_ids"] == [] and "reconciled" in sub["deferred"][0]
        files[job] = reqs
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT state FROM intents") == [("open",), ("open",)]
    assert emu.stats()["batches_created"] == 2

    poll = cli("poll", "--once", "--json", check=True).json()
    assert sum("reconciled an unclear submission" in c for c in poll["changes"]) == 2
    stats = emu.stats()
    assert stats["batches_created"] == 2 and stats["calls"]["create"] == 2  # nothing sent twice
    for job, reqs in files.items():
        assert_delivered(data_root / "commentary" / job, reqs, data_root)
    assert query(db, "SELECT count(DISTINCT batch_id), sum(state='created') FROM intents") == [(2, 2)]
    assert cli("poll", "--once", "--json", check=True).json()["still_pending"] == 0
    assert emu.stats()["batches_created"] == 2


def test_create_answer_stalled_past_the_timeout_is_reconciled(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "stall", "--stall-seconds", "8")
    _config(_isolated_home, "api:\n  create_timeout_seconds: 1.5\n")
    reqs = write_requests(tmp_path / "r.jsonl", 30)
    result = cli("submit", "requests", str(reqs), "--output", TEMPLATE.format(job="s"), "--json")
    sub = result.json()
    assert result.code == 6 and not sub["confirmed"]
    assert sub["batch_ids"] == [] and "never sent twice" in sub["deferred"][0]
    human = cli("list").out
    assert "close your laptop" not in human
    assert emu.stats()["batches_created"] == 1

    listed = cli("list", "--json", check=True).json()["jobs"][0]
    assert listed["state"] == "active"
    cli("poll", "--once", check=True)
    stats = emu.stats()
    assert stats["batches_created"] == 1 and stats["calls"]["create"] == 1
    assert_delivered(data_root / "commentary" / "s", reqs, data_root)
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT state FROM jobs") == [("done",)]
    assert len(request_params(reqs)) == query(db, "SELECT count(*) FROM requests WHERE outcome='succeeded'")[0][0]


def test_an_unclear_submit_says_so_and_who_sends_it_with_a_daemon_or_without(api_cli, tmp_path, _isolated_home):
    """Exit 6 and no "close your laptop": recorded, not confirmed; without a daemon the person is told to run
    `poll --once`; with one running (its lock held), that the daemon reconciles it."""
    from tegbatchd.locks import file_lock

    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop", "--unclear-create-count", "2")
    first = cli("submit", "requests", str(write_requests(tmp_path / "a.jsonl", 3)), "--output", "a/{custom_id}.md")
    assert first.code == 6 and "RECORDED, NOT CONFIRMED" in first.out and "SUBMITTED" not in first.out
    assert "close your laptop" not in first.out
    assert "no daemon is running: run `tegbatchd poll --once`" in first.out and "never sends twice" in first.out
    with file_lock(_isolated_home / "state" / "daemon.lock", wait=0) as held:   # as a running daemon holds it
        assert held
        second = cli("submit", "requests", str(write_requests(tmp_path / "b.jsonl", 3, prefix="b")), "--output",
                     "b/{custom_id}.md")   # (flock: another open file, so held against this probe as well)
    assert second.code == 6 and "close your laptop" not in second.out
    assert "the running daemon sends (or reconciles) it at its next poll" in second.out
    assert emu.stats()["batches_created"] == 2   # each made once, none confirmed
