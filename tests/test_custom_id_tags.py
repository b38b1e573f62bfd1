"""custom_ids unique to their intent: every request is sent as "<custom_id>-<tag>", the archive holds exactly
the bytes sent, results map back by the sent id, a retry's intent gets a new tag, and people see the
readable ids."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tegbatchd.errors import InputError
from tegbatchd.submission import _body, archive_group, id_offset, read_requests_file, sent_id
from tests.conftest import request_params, untagged, write_requests
from tests.reliability.support import query

API_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
LIMITS = {"max_requests": 100_000, "max_bytes": 256_000_000}


def test_sent_ids_keep_the_readable_part_and_fit_the_api_rule():
    assert sent_id("TEG17_R1_story_notes", "0a1b2c3d") == "TEG17_R1_story_notes-0a1b2c3d"
    assert sent_id("x", None) == "x"   # an intent recorded before tags: sent as it was
    long_a, long_b = "a" * 60 + "_one", "a" * 60 + "_two"
    cut_a, cut_b = sent_id(long_a, "0a1b2c3d"), sent_id(long_b, "0a1b2c3d")
    assert len(cut_a) == len(cut_b) == 64 and cut_a != cut_b and cut_a.startswith("a" * 46)
    for cid in ("x", "a-b_c", "y" * 55, "z" * 56, "Q" * 64, long_a):
        assert API_ID.match(sent_id(cid, "ffffffff")), cid


@pytest.mark.parametrize(("line", "found"), [
    (b'{"custom_id":"r-1","params":{"model":"m"}}', 14),
    (b'{ "custom_id" : "r-1" , "params": {}}', 17),
    (b'{"params":{"model":"m"},"custom_id":"r-1"}', 37),
    (b'{"params":{},"custom_id": "r-1" }\r', 27),
    (b'{"params":{"metadata":{"custom_id":"r-1"}},"custom\\u005fid":"r-1"}', None),   # only a nested one literal
    (b'{"custom_id":"r-1","params":{"metadata":{"custom_id":"r-1"}}}', None),         # written twice
    (b'{"custom_id":"r-10","params":{}}', None),                                     # another id
    (b'{"custom_id":"r\\u002d1","params":{}}', None),                                 # escaped
])
def test_the_custom_id_is_swapped_in_place_only_where_it_is_surely_the_top_level_one(line, found):
    assert id_offset(line, "r-1") == found


def test_the_archive_holds_exactly_the_bytes_sent_with_a_fresh_tag_per_batch(tmp_path, data_root):
    reqs = tmp_path / "r.jsonl"
    reqs.write_text(
        '{"params": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, "custom_id": "a"}\n'
        '{"custom_id":"b","params":{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"b"}]}}\n'
        '{"custom_id":"c","params":{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"c"}],'
        '"metadata":{"custom_id":"c"}}}\n')
    items = read_requests_file(reqs, "out/{custom_id}.md", data_root)
    parts = archive_group(tmp_path, "job", items, {**LIMITS, "max_requests": 2})
    assert [(p.start, p.stop) for p in parts] == [(0, 2), (2, 3)] and parts[0].tag != parts[1].tag
    sent = [json.loads(line) for p in parts for line in Path(p.archive).read_bytes().splitlines()]
    assert [o["custom_id"] for o in sent] == [f"{c}-{parts[i // 2].tag}" for i, c in enumerate("abc")]
    assert [o["params"] for o in sent] == list(request_params(reqs).values())   # params untouched
    assert sent[2]["params"]["metadata"] == {"custom_id": "c"}                     # a nested id is not the id
    body = _body(Path(parts[0].archive))
    assert json.loads(body)["requests"] == sent[:2]   # the create body: the archive's lines, as they are
    assert parts[0].sent_ids == [o["custom_id"] for o in sent[:2]]


def test_two_ids_that_meet_once_cut_are_refused(tmp_path, data_root):
    reqs = tmp_path / "r.jsonl"
    long = "a" * 60
    twin = sent_id(long, "x")[:55]  # a readable id that is exactly another's cut form
    write_requests(reqs, 0)
    reqs.write_text("".join(json.dumps({"custom_id": c, "params": {
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": c}]}}) + "\n" for c in (long, twin)))
    items = read_requests_file(reqs, "out/{index}.md", data_root)
    with pytest.raises(InputError, match="same once cut"):
        archive_group(tmp_path, "job", items, LIMITS)


def test_results_map_back_by_sent_id_and_people_see_readable_ids(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "0.3", "--seed", "5")
    reqs = write_requests(tmp_path / "r.jsonl", 20)
    batch = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md", "--json", check=True).json()
    (first,) = batch["batch_ids"]
    cli("poll", "--once", check=True)
    db = _isolated_home / "state" / "state.db"
    (tag,) = query(db, "SELECT tag FROM intents WHERE batch_id=?", (first,))[0]
    assert re.fullmatch(r"[0-9a-f]{8}", tag)
    assert set(emu.received()) >= {f"req-{i:05d}-{tag}" for i in range(20)}   # what reached the API
    written = sorted(p.stem for p in (data_root / "out").glob("*.md"))
    assert written and all(re.fullmatch(r"req-\d{5}", name) for name in written)   # named by readable id
    status = cli("status", first, "--json", check=True).json()
    assert status["errored"] and all(re.fullmatch(r"req-\d{5}", e["custom_id"]) for e in status["errored"])
    job = cli("list", "--json", check=True).json()["jobs"][0]
    # the transient failures went out again by themselves: a new intent, a new tag, the same readable ids
    tags = [t for (t,) in query(db, "SELECT tag FROM intents ORDER BY id")]
    assert len(tags) == 2 and len(set(tags)) == 2, job
    resent = query(db, "SELECT custom_id, sent_id FROM requests WHERE intent_id=(SELECT max(id) FROM intents)")
    assert resent and all(sent == f"{cid}-{tags[1]}" for cid, sent in resent)
    archive = query(db, "SELECT archive FROM intents ORDER BY id DESC LIMIT 1")[0][0]
    assert sorted(json.loads(line)["custom_id"] for line in Path(archive).read_text().splitlines()) == sorted(
        sent for _, sent in resent)
    cli("poll", "--once", check=True)
    failed = {f["custom_id"] for f in cli("list", "--json", check=True).json()["jobs"][0]["failures"]}
    assert all(untagged(c) == c for c in failed)
