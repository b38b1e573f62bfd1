"""Bad input: each is refused with a clear message and a non-zero exit, writes nothing and leaves the
state as it was (a dump of every table and a listing of the data root and state dir, before and after)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import write_requests
from tests.reliability.support import TEMPLATE, assert_delivered, db_dump, query, tree

GOOD = '{"custom_id": "%s", "params": {"model": "claude-sonnet-5-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}}\n'  # noqa: E501

CONFIGS = [
    ("malformed YAML", "poll_interval_minutes: [5\nstages: {\n", ["poll", "--once"], "malformed YAML"),
    ("unknown key", "pol_interval_minutes: 5\n", ["list"], "pol_interval_minutes: unknown key"),
    ("wrong types", "poll_interval_minutes: often\nbatch_limits:\n  max_requests: 0\nnotifications: yes\n",
     ["submit", "requests", "{good}", "--output", TEMPLATE], "poll_interval_minutes: must be a number"),
    ("bad create timeout", "api:\n  create_timeout_seconds: 0\n", ["poll", "--once"],
     "api.create_timeout_seconds: must be greater than 0"),
    ("top level not a mapping", "- just\n- a list\n", ["list"], "the top level must be a mapping"),
]

COMMANDS = [
    ("TEG range backwards", ["submit", "round-reports", "--teg", "17-10"], "TEG range 17-10 is backwards"),
    ("TEG outside the data", ["submit", "round-reports", "--teg", "40"], "TEG 40 is not in all-scores.csv"),
    ("TEG --range backwards", ["submit", "tournament", "--range", "17", "10", "--batch-reports"], "backwards"),
    ("round outside the data", ["submit", "round-reports", "--teg", "17", "--round", "9"],
     "round 9 is not in the data for TEG 17"),
    ("TEG not a number", ["submit", "round-reports", "--teg", "seventeen"], "is not a number or a range"),
    ("unknown batch: retrieve", ["retrieve", "msgbatch_doesnotexist"], "no job or batch 'msgbatch_doesnotexist'"),
    ("unknown batch: status", ["status", "msgbatch_doesnotexist"], "no job or batch 'msgbatch_doesnotexist'"),
    ("unknown batch: cancel", ["cancel", "msgbatch_doesnotexist"], "no job or batch 'msgbatch_doesnotexist'"),
    ("unknown batch: retry", ["retry", "msgbatch_doesnotexist"], "no job or batch 'msgbatch_doesnotexist'"),
]

JSONL = [
    ("bad JSON", GOOD % "a" + "{not json}\n", "line 2: not valid JSON"),
    ("missing params", GOOD % "a" + '{"custom_id": "b"}\n', "line 2: needs an object with"),
    ("not an object", "[1, 2]\n", "line 1: needs an object with"),
    ("duplicate custom_id", GOOD % "a" + GOOD % "a", "line 2: custom_id 'a' repeats line 1"),
    ("invalid custom_id", GOOD % "no spaces allowed", "line 1: custom_id 'no spaces allowed' must be"),
    ("custom_id too long", GOOD % ("x" * 65), "must be 1-64"),
    ("params not an object", '{"custom_id": "a", "params": "hello"}\n', "line 1: params must be an object"),
    ("params incomplete", '{"custom_id": "a", "params": {"model": "m"}}\n', "params lacks max_tokens, messages"),
    ("empty file", "\n\n", "holds no requests"),
    ("not UTF-8", b"\xff\xfe{\x00\n", "line 1: not valid JSON"),
]

TEMPLATES = [
    ("parent escape", "../outside/{custom_id}.md", "leaves the data root"),
    ("absolute", "/tmp/{custom_id}.md", "is absolute"),
    ("home", "~/{custom_id}.md", "is absolute"),
    ("unknown field", "commentary/{nope}.md", "uses {nope}"),
    ("shared output", "commentary/same.md", "is also line 1's"),
    ("symlink out", "link/{custom_id}.md", "resolves outside the data root"),
    ("under a file", "blocker/{custom_id}.md", "is a file, not a folder"),
    ("a folder", "commentary/{custom_id}", "is a folder"),
]


def _state(home: Path, data_root: Path) -> tuple:
    return db_dump(home / "state" / "state.db"), tree(data_root), tree(home, skip=("config", "logs"))


def test_bad_input_is_refused_and_changes_nothing(api_cli, tmp_path, real_data, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    good = write_requests(tmp_path / "good.jsonl", 5)
    cli("submit", "requests", str(good), "--output", TEMPLATE, check=True)
    cli("poll", "--once", check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_root / "link").symlink_to(outside)
    (data_root / "blocker").write_text("a file where a folder would go\n")
    (data_root / "commentary" / "req-00000").mkdir()  # a folder where the template "a folder" would write
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    config = _isolated_home / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    before = _state(_isolated_home, data_root)
    creates = emu.stats()["calls"]["create"]

    cases = []
    for name, text, argv, expected in CONFIGS:
        cases.append((f"config: {name}", text, [a.replace("{good}", str(good)) for a in argv], expected))
    cases += [(name, None, argv, expected) for name, argv, expected in COMMANDS]
    for name, content, expected in JSONL:
        path = tmp_path / f"bad-{len(cases)}.jsonl"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append((f"requests file: {name}", None, ["submit", "requests", str(path), "--output", TEMPLATE],
                      expected))
    cases.append(("requests file: missing", None, ["submit", "requests", str(tmp_path / "nope.jsonl"),
                                                   "--output", TEMPLATE], "cannot read"))
    for name, template, expected in TEMPLATES:
        cases.append((f"template: {name}", None, ["submit", "requests", str(good), "--output", template], expected))
    cases.append(("data root is a file", None, ["submit", "requests", str(good), "--output", TEMPLATE,
                                                "--data-dir", str(a_file)], "is a file, not a folder"))

    for name, config_text, argv, expected in cases:
        if config_text is not None:
            config.write_text(config_text)
        result = cli(*argv)
        config.unlink(missing_ok=True)
        assert result.code == 2, f"{name}: exit {result.code}\n{result.out}\n{result.err}"
        assert expected in result.err, f"{name}: {result.err}"
        assert result.err.startswith("error: ") and "Traceback" not in result.err, f"{name}: {result.err}"
        assert _state(_isolated_home, data_root) == before, f"{name}: the state or the data root changed"
    assert emu.stats()["calls"]["create"] == creates
    assert list(outside.iterdir()) == []
    print(f"\nbad input: {len(cases)} cases refused, state unchanged")


def _results_line(cid: str, text: str, *, crlf: bool = False) -> bytes:
    line = {"custom_id": cid, "result": {"type": "succeeded", "message": {
        "id": f"msg_{cid}", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20}}}}
    return json.dumps(line).encode() + (b"\r\n" if crlf else b"\n")


def test_odd_results_stream_writes_only_what_is_sound(api_cli, tmp_path, data_root, _isolated_home):
    big = "".join(f"line {i:07d} of a very long answer\n" for i in range(320_000))  # ~10 MB in one JSON line
    stream = b"".join([
        _results_line("r-0", "first answer for r-0"),
        b"\n",
        _results_line("r-1", "answer for r-1, CRLF line", crlf=True),
        b"\r\n",
        _results_line("ghost-1", "an answer nobody asked for"),
        json.dumps({"custom_id": "r-2", "result": {"type": "errored", "error": {
            "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}}).encode() + b"\n",
        _results_line("r-3", big),
        b"{not json at all\n",
        b'{"custom_id": "r-4"}\n',
        _results_line("r-4", "answer for r-4"),
        _results_line("r-0", "a second answer for r-0 that must not replace the first"),
        json.dumps({"custom_id": "r-5", "result": {"type": "expired"}}).encode() + b"\n",
        _results_line("r-6", "answer for r-6")[:-40],  # the last line is cut short, no newline
    ])
    assert len(stream) > 10_000_000
    replay = tmp_path / "odd-results.jsonl"
    replay.write_bytes(stream)
    cli, emu = api_cli("--process-seconds", "0", "--replay-any", str(replay))
    reqs = tmp_path / "r.jsonl"
    reqs.write_text("".join(GOOD % f"r-{i}" for i in range(7)))
    batch = cli("submit", "requests", str(reqs), "--output", "answers/{custom_id}.md", "--json",
                check=True).json()["batch_ids"][0]
    result = cli("retrieve", batch)
    assert result.code == 0, result.err
    folder = data_root / "answers"
    assert sorted(p.name for p in folder.iterdir()) == ["r-0.md", "r-1.md", "r-3.md", "r-4.md"]
    assert (folder / "r-0.md").read_text() == "first answer for r-0"
    assert (folder / "r-1.md").read_text() == "answer for r-1, CRLF line"
    assert (folder / "r-3.md").read_text() == big
    assert (folder / "r-4.md").read_text() == "answer for r-4"
    assert "unknown custom_id 'ghost-1' in the results; not written" in result.out
    assert result.out.count("is malformed; skipped") == 3
    assert "1 request(s) had no result line" in result.out
    assert "✗ r-2: errored (overloaded_error)" in result.out and "✗ r-5: expired" in result.out
    assert "✗ r-6: errored (missing_result)" in result.out and "tegbatchd retry" in result.out
    assert [p for p in tmp_path.rglob("ghost-1*")] == []
    db = _isolated_home / "state" / "state.db"
    outcomes = dict(query(db, "SELECT custom_id, coalesce(error_type, outcome) FROM requests "   # first attempts
                              "WHERE intent_id=(SELECT min(intent_id) FROM requests)"))
    assert outcomes == {"r-0": "succeeded", "r-1": "succeeded", "r-2": "overloaded_error", "r-3": "succeeded",
                        "r-4": "succeeded", "r-5": "expired", "r-6": "missing_result"}
    assert cli("retrieve", batch, check=True).out.count("wrote") == 0  # a rerun writes nothing again


def test_damaged_or_newer_state_database_is_refused_untouched(cli, tmp_path, _isolated_home):
    import sqlite3

    from tegbatchd.store import PlannedIntent, Store

    state = _isolated_home / "state"
    state.mkdir(parents=True)
    db = state / "state.db"
    Store.open(db).close()
    healthy = db.read_bytes()

    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)  # garbage after a plausible header
    for argv in (["list"], ["poll", "--once"], ["retrieve", "msgbatch_x"]):
        result = cli(*argv)
        assert result.code == 7 and "state database" in result.err and "Traceback" not in result.err, result.err
    assert db.read_bytes() == b"SQLite format 3\x00" + b"\x13" * 5000

    db.write_bytes(healthy)  # a readable file whose jobs table (what list reads first) is damaged
    store = Store.open(db)
    store.create_job("job_x", "requests", "t", {"source": "s"}, str(tmp_path), ["requests"])
    stage = store.stages("job_x")[0]
    (intent,) = store.record_stage(stage["id"], [PlannedIntent("a", 10, [(f"c{i}", f"/o/{i}", "m", 5)
                                                                      for i in range(400)])], [])
    store.attach_batch(intent, {"id": "msgbatch_x", "created_at": "2026-01-01T00:00:00Z", "processing_status":
                                "ended", "request_counts": dict.fromkeys(
                                    ("processing", "succeeded", "errored", "canceled", "expired"), 0)})
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = store.conn.execute("SELECT rootpage FROM sqlite_master WHERE name='jobs'").fetchone()[0]
    page = store.conn.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    with db.open("r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xde\xad\xbe\xef" * (page // 4))
    damaged = db.read_bytes()
    result = cli("list")
    assert result.code == 7 and "Traceback" not in result.err, result.err
    assert "is unreadable or cannot be written (database disk image is malformed)" in result.err
    assert "move it aside" in result.err
    assert db.read_bytes() == damaged

    db.write_bytes(healthy)  # from a newer tegbatchd, in rollback-journal mode
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_migrations VALUES(99, 'from the future', 'x')")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    newer = db.read_bytes()
    result = cli("list")
    assert result.code == 7 and "from a newer tegbatchd (schema 99" in result.err and "nothing was changed" in result.err
    assert db.read_bytes() == newer
    assert sorted(p.name for p in state.iterdir()) == ["state.db"]


def _in_mount_namespace(cli, script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=cli.env,
                          cwd=cli.cwd, capture_output=True, text=True, timeout=300)


def test_read_only_data_root_then_writable_again(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    reqs = write_requests(tmp_path / "r.jsonl", 20)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    db = _isolated_home / "state" / "state.db"
    requests_before = query(db, "SELECT * FROM requests ORDER BY id")
    python = subprocess.list2cmdline([__import__("sys").executable])
    # Tests run as root, which chmod cannot stop: a read-only bind mount of the data root can.
    ro = _in_mount_namespace(cli, f"mount --bind {data_root} {data_root} && "
                                  f"mount -o remount,bind,ro {data_root} && "
                                  f"exec {python} -m tegbatchd retrieve {batch}")
    assert ro.returncode == 1, ro.stderr
    assert "Read-only file system" in ro.stderr and "tegbatchd retrieve" in ro.stderr
    assert "Traceback" not in ro.stderr
    assert tree(data_root) == {}
    assert query(db, "SELECT * FROM requests ORDER BY id") == requests_before
    cli("retrieve", batch, check=True)
    assert_delivered(data_root / "commentary" / "misc", reqs, data_root)


def test_disk_full_mid_retrieval_then_space_again(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--answer-bytes", "3000")
    n = 120
    reqs = write_requests(tmp_path / "r.jsonl", n)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    folder = data_root / "commentary" / "misc"
    folder.mkdir(parents=True)
    copy = tmp_path / "copy"
    python = subprocess.list2cmdline([__import__("sys").executable])
    # A 256 KB tmpfs as the output folder (in a private mount namespace): full after a few dozen files;
    # then it is grown, as if space were freed, and the same retrieval is run again.
    script = (f"mount -t tmpfs -o size=256k tmpfs {folder} && "
              f"{python} -m tegbatchd retrieve {batch} > {tmp_path}/run1.out 2> {tmp_path}/run1.err; "
              f"echo $? > {tmp_path}/run1.code; "
              f"mount -o remount,size=8m {folder} && "
              f"{python} -m tegbatchd retrieve {batch} > {tmp_path}/run2.out 2> {tmp_path}/run2.err; "
              f"echo $? > {tmp_path}/run2.code; cp -a {folder} {copy}")
    done = _in_mount_namespace(cli, script)
    assert done.returncode == 0, done.stderr
    run1, run2 = ((tmp_path / f"run{i}.out").read_text() for i in (1, 2))
    err1 = (tmp_path / "run1.err").read_text()
    assert (tmp_path / "run1.code").read_text().strip() == "1"
    assert "No space left on device" in err1 and f"tegbatchd retrieve {batch}" in err1, err1
    assert "Traceback" not in err1
    first = run1.count("✓ wrote")
    assert 0 < first < n
    assert (tmp_path / "run2.code").read_text().strip() == "0", (tmp_path / "run2.err").read_text()
    assert run2.count("✓ wrote") == n - first  # what was written before the disk filled was kept
    assert_delivered(copy, reqs, copy)
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT count(*) FROM requests WHERE outcome='succeeded'") == [(n,)]
    # Outside the namespace the tmpfs is gone: the recorded files are missing, and are written again.
    again = cli("retrieve", batch, check=True).out
    assert f"{n} recorded file(s) were missing and will be written again" in again
    assert_delivered(folder, reqs, data_root)
