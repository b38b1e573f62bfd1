"""Adopt only what is provably ours (issue 13, points 2 and 3).

An unclear create is reconciled with a batch on the API of the same size made since it was attempted.
Another state dir on the same key can make such a batch. Every custom_id an intent sends carries its tag,
so an adopted batch is read for its ids before anything is written: a foreign one is recorded apart,
nothing of it is written, and the intent is sent again. The window is measured on the server's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tegbatchd.provenance import Verdict, decide
from tegbatchd.submission import on_server_clock
from tests.conftest import TEST_KEY, assert_own_answer, request_params, write_requests
from tests.reliability.support import query
from tests.support.emulator import sdk_client

TEMPLATE = "commentary/misc/{custom_id}.md"


# --- the decision, on plain data ---------------------------------------------------------------------
def test_a_batch_is_ours_only_when_its_results_carry_exactly_the_intents_ids():
    mine = {"a-1111aaaa", "b-1111aaaa", "c-1111aaaa"}
    assert decide(mine, 3, ["b-1111aaaa", "a-1111aaaa", None, "c-1111aaaa"]) == Verdict(True)
    assert decide(mine, 4, []).ours is False                           # the count alone tells
    assert "never sent" in decide(mine, 3, ["a-2222bbbb"]).reason      # another tag on the first line
    assert decide(mine, 3, ["a-1111aaaa", "b-1111aaaa", "c-2222bbbb"]).ours is False   # the first lines matched
    assert "twice" in decide(mine, 3, ["a-1111aaaa", "a-1111aaaa", "b-1111aaaa"]).reason
    assert "no result" in decide(mine, 3, ["a-1111aaaa", "b-1111aaaa"]).reason


def test_the_first_foreign_id_ends_the_read():
    read = []

    def ids():
        for cid in ("x-2222bbbb", "a-1111aaaa"):
            read.append(cid)
            yield cid

    assert decide({"a-1111aaaa", "b-1111aaaa"}, 2, ids()).ours is False and read == ["x-2222bbbb"]


def test_a_local_time_is_moved_to_the_servers_clock():
    local_now = datetime(2026, 12, 1, 12, 6, tzinfo=UTC)     # the laptop is 6 minutes fast
    server_now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    attempted = datetime(2026, 12, 1, 11, 56, tzinfo=UTC)
    assert on_server_clock(attempted, local_now, server_now) == datetime(2026, 12, 1, 11, 50, tzinfo=UTC)
    assert on_server_clock(attempted, local_now, local_now + timedelta(hours=2)) == attempted + timedelta(hours=2)
    assert on_server_clock(attempted, local_now, None) == attempted   # no Date header: as it is


# --- two state dirs on one key -----------------------------------------------------------------------
def _lost_create(cli, emu, reqs, home):
    """A's submit: its create is attempted, the answer never comes (a dropped connection), and the batch
    never came to be (deleted here, as a create that never reached the API would leave it)."""
    result = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json")
    assert result.code == 6 and result.json()["batch_ids"] == []
    db = home / "state" / "state.db"
    assert query(db, "SELECT state, attempted_at IS NOT NULL FROM intents") == [("open", 1)]
    client = sdk_client(emu.url, api_key=TEST_KEY)
    (made,) = [b.id for b in client.messages.batches.list()]
    client.messages.batches.delete(made)
    return db


@pytest.mark.parametrize("b_ids", ["other custom_ids", "same readable custom_ids, other params"])
def test_another_state_dirs_batch_of_the_same_size_is_never_adopted(api_cli, tmp_path, data_root,
                                                                     _isolated_home, b_ids):
    cli_a, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop")
    home_b, data_b = tmp_path / "home-b", tmp_path / "data-b"
    data_b.mkdir()
    cli_b = cli_a.bound(TEGBATCHD_HOME=str(home_b), TEGBATCHD_DATA_DIR=str(data_b))
    reqs_a = write_requests(tmp_path / "a.jsonl", 6, max_tokens=100)
    reqs_b = write_requests(tmp_path / "b.jsonl", 6, prefix="req" if "same" in b_ids else "bee", max_tokens=200)
    db_a = _lost_create(cli_a, emu, reqs_a, _isolated_home)
    b_batch = cli_b("submit", "requests", str(reqs_b), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]

    first = cli_a("poll", "--once", "--json", check=True).json()
    assert any("reconciled" in c for c in first["changes"])          # matched by size and time...
    assert any("not this job's" in c for c in first["changes"]), first["changes"]   # ...and refused at retrieval
    assert not (data_root / "commentary").exists()                    # nothing of B's written in A's files
    assert query(db_a, "SELECT batch_id, intent_id FROM foreign_batches") == [(b_batch, 1)]
    assert query(db_a, "SELECT state, batch_id FROM intents") == [("open", None)]
    assert query(db_a, "SELECT count(*) FROM requests WHERE outcome IS NOT NULL") == [(0,)]

    for _ in range(3):
        cli_a("poll", "--once", check=True)
        cli_b("poll", "--once", check=True)
    assert query(db_a, "SELECT state FROM jobs") == [("done",)]
    (a_batch,) = [b for (b,) in query(db_a, "SELECT id FROM batches")]
    assert a_batch != b_batch                                          # A's requests were sent again
    for folder, reqs in ((data_root, reqs_a), (data_b, reqs_b)):
        for cid, params in request_params(reqs).items():
            assert_own_answer((folder / "commentary" / "misc" / f"{cid}.md").read_text(), cid, params)


def test_a_foreign_batch_adopted_anyway_writes_nothing_and_the_intent_is_sent_again(api_cli, tmp_path, data_root,
                                                                                    _isolated_home):
    """The match forced (what reconcile would do with a batch of the same size and time): retrieval's own
    check refuses it, whatever reconcile thought."""
    from tegbatchd.store import Store

    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop")
    reqs = write_requests(tmp_path / "a.jsonl", 4)
    db = _lost_create(cli, emu, reqs, _isolated_home)
    client = sdk_client(emu.url, api_key=TEST_KEY)
    other = client.messages.batches.create(requests=[
        {"custom_id": f"req-{i:05d}", "params": {"model": "claude-sonnet-5-5", "max_tokens": 9,
                                                 "messages": [{"role": "user", "content": "someone else's"}]}}
        for i in range(4)])  # same size, and the readable ids of A's own requests, untagged
    store = Store.open(db)
    from tegbatchd.api import batch_to_dict

    store.attach_batch(1, batch_to_dict(client.messages.batches.retrieve(other.id)), reconciled=True)
    store.close()
    retrieved = cli("retrieve", other.id, "--json")
    assert "not this job's" in retrieved.out + retrieved.err
    assert not (data_root / "commentary").exists()
    assert query(db, "SELECT state FROM intents") == [("open",)]
    assert query(db, "SELECT batch_id FROM foreign_batches") == [(other.id,)]
    created = emu.stats()["calls"]["create"]
    cli("poll", "--once", check=True)
    cli("poll", "--once", check=True)
    assert emu.stats()["calls"]["create"] == created + 1               # sent again, once
    assert query(db, "SELECT state FROM jobs") == [("done",)]
    for cid, params in request_params(reqs).items():
        assert_own_answer((data_root / "commentary" / "misc" / f"{cid}.md").read_text(), cid, params)


def test_a_laptop_clock_six_minutes_fast_does_not_send_an_unclear_create_twice(api_cli, tmp_path, data_root,
                                                                               _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop", "--clock-offset", "-360")
    reqs = write_requests(tmp_path / "r.jsonl", 5)
    assert cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json").code == 6
    poll = cli("poll", "--once", "--json", check=True).json()
    assert any("reconciled" in c for c in poll["changes"]), poll["changes"]
    stats = emu.stats()
    assert stats["batches_created"] == 1 and stats["calls"]["create"] == 1
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT reconciled, verified_at IS NOT NULL FROM batches") == [(1, 1)]   # checked: ours
    for cid, params in request_params(reqs).items():
        assert_own_answer((data_root / "commentary" / "misc" / f"{cid}.md").read_text(), cid, params)
