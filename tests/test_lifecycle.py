"""End to end: `tegbatchd` as a subprocess, the emulator on loopback, TEGBATCHD_HOME in tmp."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, TEST_KEY, assert_own_answer, request_params, write_requests

TEMPLATE = "commentary/misc/{custom_id}.md"


def outputs(data_root: Path) -> dict[str, str]:
    folder = data_root / "commentary" / "misc"
    return {p.stem: p.read_text() for p in folder.glob("*.md")} if folder.exists() else {}


def assert_all_own(data_root: Path, reqs: Path) -> None:
    params = request_params(reqs)
    written = outputs(data_root)
    assert set(written) == set(params)
    for cid, text in written.items():
        assert_own_answer(text, cid, params[cid])


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_submit_exit_poll_writes_every_answer_to_its_own_file(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--shuffle-results")
    reqs = write_requests(tmp_path / "r.jsonl", 25)
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    assert len(sub["batch_ids"]) == 1 and sub["requests"] == 25
    assert sub["estimated_cost_usd"] < sub["standard_cost_usd"]
    assert outputs(data_root) == {}  # returned at once: nothing retrieved yet
    human = cli("submit", "requests", str(write_requests(tmp_path / "r2.jsonl", 2, prefix="x")),
                "--output", "commentary/other/{custom_id}.md", check=True).out
    assert "close your laptop" in human and "msgbatch_" in human
    poll = cli("poll", "--once", "--json", check=True).json()
    assert poll["still_pending"] == 0
    assert_all_own(data_root, reqs)
    assert no_temp_files(data_root)
    again = cli("retrieve", sub["batch_ids"][0], check=True).out
    assert "Nothing new" in again


def test_sixty_real_requests_submitted_and_retrieved(api_cli, data_root):
    # The recorded requests name claude-sonnet-4-5, retired on 2026-11-30: the emulator runs a day before.
    # All 60 in one batch: cache priming (one request first) has its own tests (tests/test_priming.py).
    config = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("cache_priming: off\n")
    cli, emu = api_cli("--process-seconds", "0", "--today", "2026-11-29")
    reqs = FIXTURES / "anthropic" / "requests-narrative-60.jsonl"
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    batch = sub["batch_ids"][0]
    out = cli("retrieve", batch, check=True).out
    assert "Retrieved 60/60 successful" in out
    assert out.count("✓ wrote") == 60
    assert_all_own(data_root, reqs)
    summary = json.loads((Path(os.environ["TEGBATCHD_HOME"]) / "state" / "summaries" / f"{batch}.json").read_text())
    assert summary["successful"] == 60 and summary["failed"] == 0


def test_real_results_file_replayed_and_written(api_cli, tmp_path, data_root):
    fixture = FIXTURES / "anthropic" / "results-satire-7.jsonl"
    lines = [json.loads(line) for line in fixture.read_text().splitlines() if line.strip()]
    # Recorded with claude-sonnet-4-5 (retired 2026-11-30, gone from the shipped prices): replayed as of the
    # day before, with the user's own price for it, as someone pricing an old batch would set.
    cli, emu = api_cli("--process-seconds", "0", "--today", "2026-11-29", "--replay-results", str(fixture))
    config = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("prices:\n  claude-sonnet-4-5:\n    input: 3.0\n    output: 15.0\n"
                      "    cache_write: 3.75\n    cache_read: 0.30\n")
    reqs = tmp_path / "satire.jsonl"
    reqs.write_text("".join(json.dumps({"custom_id": r["custom_id"], "params": {
        "model": "claude-sonnet-4-5", "max_tokens": 4000, "messages": [{"role": "user", "content": "x"}]}}) + "\n"
        for r in lines))
    batch = cli("submit", "requests", str(reqs), "--output", "commentary/drafts/{custom_id}.md", "--json",
                check=True).json()["batch_ids"][0]
    cli("retrieve", batch, check=True)
    for r in lines:
        expected = "\n\n".join(b["text"] for b in r["result"]["message"]["content"] if b["type"] == "text")
        assert (data_root / "commentary" / "drafts" / f"{r['custom_id']}.md").read_text() == expected
    status = cli("status", batch, "--json", check=True).json()
    usage_cost = status["cost_usd"]
    assert usage_cost > 0 and status["standard_cost_usd"] == pytest.approx(usage_cost * 2, rel=1e-3)


def test_partial_failure_is_resubmitted_by_poll_then_retry_completes_without_resending_successes(
        api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "0.3", "--expire-rate", "0.1", "--seed", "7")
    reqs = write_requests(tmp_path / "r.jsonl", 60)
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    first = sub["batch_ids"][0]
    cli("poll", "--once", check=True)
    status = cli("status", first, "--json", check=True).json()
    failed = status["counts"]["errored"] + status["counts"]["expired"]
    assert 0 < failed < 60
    assert len(outputs(data_root)) == 60 - failed
    before = {cid: (data_root / "commentary/misc" / f"{cid}.md").stat().st_mtime_ns for cid in outputs(data_root)}
    # the transient failures (overloaded, api_error, expired) went out again by themselves, in one batch
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "active" and len(job["batches"]) == 2
    assert sum(job["batches"][1]["counts"].values()) == failed
    rounds = 0
    while len(outputs(data_root)) < 60 and rounds < 6:  # later attempts may fail again (fixed by the seed)
        cli("poll", "--once", check=True)
        job = cli("list", "--json", check=True).json()["jobs"][0]
        if job["state"] in ("partial", "failed"):
            assert job["next"] == f"tegbatchd retry {job['id']}", job   # one job-level command, never per batch
            assert all(b["next"] is None for b in job["batches"])
            retried = cli("retry", first, "--json", check=True).json()   # any batch id of the job works
            assert retried["resubmitted"] == len(job["failed"]) > 0
        rounds += 1
    assert_all_own(data_root, reqs)
    for cid, mtime in before.items():  # successes were never rewritten nor resubmitted
        assert (data_root / "commentary/misc" / f"{cid}.md").stat().st_mtime_ns == mtime
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "done" and job["failed"] == [] and job["written"] == 60
    from tegbatchd.store import Store

    rows = Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db").job_requests(job["id"])
    successes = [r["custom_id"] for r in rows if r["outcome"] == "succeeded"]
    assert sorted(successes) == sorted(request_params(reqs))  # each exactly once
    resent = [r for r in rows if r["intent_id"] != rows[0]["intent_id"]]
    assert len(resent) == sum(1 for r in rows if r["retried_by"] is not None)  # only failures were resent
    assert emu.stats()["batches_created"] == len(job["batches"])  # no create was ever sent twice


def test_cancel_then_retry_canceled(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "300")
    reqs = write_requests(tmp_path / "r.jsonl", 5)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    out = cli("cancel", batch, check=True).out
    assert "canceling" in out
    emu.finish(batch)
    cli("poll", "--once", check=True)
    status = cli("status", batch, "--json", check=True).json()
    assert status["api_status"] == "ended" and status["local_state"] == "retrieved"
    assert status["counts"]["canceled"] + status["counts"]["succeeded"] == 5
    if status["counts"]["canceled"]:
        assert cli("retry", batch, "--json", check=True).json()["resubmitted"] == status["counts"]["canceled"]


def test_expired_requests_are_resubmitted_once_then_notified_once_in_words(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "200000")
    reqs = write_requests(tmp_path / "r.jsonl", 4)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    emu.advance(86400 + 5)
    cli("poll", "--once", check=True)
    status = cli("status", batch, "--json", check=True).json()
    assert status["counts"]["expired"] == 4 and outputs(data_root) == {}
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "active" and len(job["batches"]) == 2   # sent again by itself (retry.max_attempts 2)
    emu.advance(86400 + 5)
    cli("poll", "--once", check=True)
    cli("poll", "--once", check=True)
    from tegbatchd.store import Store

    store = Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")
    notices = store.notices()
    assert [n["kind"] for n in notices] == ["job_failed"]   # one notice for the job, none per batch
    assert "msgbatch_" not in notices[0]["title"] + notices[0]["body"]
    assert notices[0]["title"] == "requests from r.jsonl: 0 of 4 files ready"
    assert notices[0]["body"] == ("4 request(s) failed after 2 attempts (expired) — tegbatchd retry " + job["id"]
                                  + ". Cost $0.0000, saved $0.0000 against the standard API")  # nothing answered
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "failed" and job["next"] == f"tegbatchd retry {job['id']}"


def test_split_above_a_lowered_batch_limit(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text("batch_limits:\n  max_requests: 10\n")
    reqs = write_requests(tmp_path / "r.jsonl", 25)
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    assert len(sub["batch_ids"]) == 3
    cli("poll", "--once", check=True)
    assert_all_own(data_root, reqs)
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert sorted(sum(b["counts"].values()) for b in job["batches"]) == [5, 10, 10]


def test_cut_results_stream_resumes_without_rewriting(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--drop-results-after", "7", "--drop-results-times", "1")
    reqs = write_requests(tmp_path / "r.jsonl", 20)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    first = cli("retrieve", batch)
    assert first.code == 1 and "Interrupted" in first.out
    written = outputs(data_root)
    assert len(written) == 7
    inodes = {cid: (data_root / "commentary/misc" / f"{cid}.md").stat().st_ino for cid in written}
    second = cli("retrieve", batch, check=True).out
    assert second.count("✓ wrote") == 13 and "Retrieved 20/20" in second
    for cid, ino in inodes.items():
        assert (data_root / "commentary/misc" / f"{cid}.md").stat().st_ino == ino
    assert_all_own(data_root, reqs)
    assert no_temp_files(data_root)


def test_list_works_with_the_emulator_stopped(api_cli, tmp_path, cli):
    bound, emu = api_cli("--process-seconds", "100")
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    batch = bound("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    emu.stop()
    out = bound("list", check=True).out
    assert batch in out and "in_progress" in out
    polled = bound("poll", "--once")
    assert polled.code == 0 and "unavailable" in polled.out


def test_poll_refreshes_many_batches_with_few_calls_and_none_when_idle(api_cli, tmp_path, cli):
    bound, emu = api_cli("--process-seconds", "600")
    for i in range(6):
        bound("submit", "requests", str(write_requests(tmp_path / f"r{i}.jsonl", 2, prefix=f"b{i}")),
              "--output", f"commentary/b{i}/{{custom_id}}.md", check=True)
    emu.reset_stats() if hasattr(emu, "reset_stats") else None
    before = emu.stats()["calls"]
    report = bound("poll", "--once", "--json", check=True).json()
    after = emu.stats()["calls"]
    calls = sum(after.values()) - sum(before.values())
    assert report["pending_before"] == 6 and calls <= 2
    idle_home = tmp_path / "idle"
    idle = bound("poll", "--once", "--json", TEGBATCHD_HOME=str(idle_home), check=True).json()
    assert idle["api_calls"] == 0 and sum(emu.stats()["calls"].values()) == sum(after.values())


def test_dry_run_sends_nothing(api_cli, tmp_path, data_root):
    cli, emu = api_cli()
    reqs = write_requests(tmp_path / "r.jsonl", 4)
    out = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--dry-run", check=True).out
    assert "Dry run" in out and "4 request(s) in 1 batch(es)" in out
    assert emu.stats()["calls"]["create"] == 0
    assert cli("list", "--json", check=True).json()["jobs"] == []


def test_wait_stays_until_written(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "1")
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    out = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--wait", check=True).out
    assert "Done:" in out
    assert_all_own(data_root, reqs)


def test_legacy_flags_keep_working(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0")
    reqs = write_requests(tmp_path / "r.jsonl", 2)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--use-batch", "--submit-only", "--json",
                check=True).json()["batch_ids"][0]
    assert batch in cli("--list-batches", check=True).out
    assert "Retrieved 2/2" in cli("--retrieve-batch", batch, check=True).out


@pytest.mark.parametrize("content, expected", [
    ('{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": []}}\n{not json}\n',
     "line 2: not valid JSON"),
    ('{"custom_id": "a"}\n', "line 1: needs an object"),
    ('{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": []}}\n'
     '{"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": []}}\n', "line 2: custom_id 'a' repeats line 1"),
    ('{"custom_id": "bad id!", "params": {"model": "m", "max_tokens": 5, "messages": []}}\n', "line 1: custom_id"),
    ('{"custom_id": "a", "params": {"model": "m", "messages": []}}\n', "params lacks max_tokens"),
])
def test_bad_requests_files_are_refused_before_sending(api_cli, tmp_path, content, expected):
    cli, emu = api_cli()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    result = cli("submit", "requests", str(bad), "--output", TEMPLATE)
    assert result.code == 2 and expected in result.err and "nothing was sent" in result.err
    assert emu.stats()["calls"]["create"] == 0


@pytest.mark.parametrize("template, expected", [
    ("../outside/{custom_id}.md", "leaves the data root"),
    ("/tmp/{custom_id}.md", "is absolute"),
    ("commentary/same.md", "is also line 1's"),
    ("commentary/{nope}.md", "uses {nope}"),
])
def test_output_templates_must_stay_inside_the_data_root(api_cli, tmp_path, template, expected):
    cli, emu = api_cli()
    reqs = write_requests(tmp_path / "r.jsonl", 2)
    result = cli("submit", "requests", str(reqs), "--output", template)
    assert result.code == 2 and expected in result.err
    assert emu.stats()["calls"]["create"] == 0


def test_one_request_over_the_byte_limit_is_refused(api_cli, tmp_path, _isolated_home):
    cli, emu = api_cli()
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text("batch_limits:\n  max_bytes: 2000\n")
    reqs = write_requests(tmp_path / "r.jsonl", 1, extra={"system": "x" * 5000})
    result = cli("submit", "requests", str(reqs), "--output", TEMPLATE)
    assert result.code == 2 and "over the" in result.err and "batch budget" in result.err
    assert emu.stats()["calls"]["create"] == 0


def test_no_key_names_the_three_ways(cli, tmp_path):
    result = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", TEMPLATE)
    assert result.code != 0
    assert "ANTHROPIC_API_KEY" in result.err and "api_key_file" in result.err and "keyring" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_rejected_key_records_nothing_as_submitted(api_cli, tmp_path):
    cli, emu = api_cli("--api-key", "sk-ant-other")
    result = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", TEMPLATE)
    assert result.code != 0 and "the API key was rejected" in result.err
    jobs = cli("list", "--json", check=True).json()["jobs"]
    assert all(not j["batches"] for j in jobs) and all(j["state"] == "failed" for j in jobs)


def test_key_file_readable_by_others_is_refused(api_cli, tmp_path, _isolated_home):
    cli, emu = api_cli()
    key = tmp_path / "key"
    key.write_text(TEST_KEY)
    key.chmod(0o644)
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text(f"api_key_file: {key}\n")
    env = {k: v for k, v in cli.env.items() if k != "ANTHROPIC_API_KEY"}
    from tests.conftest import Cli

    no_env_key = Cli(env, cli.cwd)
    result = no_env_key("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", TEMPLATE)
    assert result.code != 0 and "readable by group or others" in result.err and "chmod 600" in result.err
    key.chmod(0o600)
    ok = no_env_key("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", TEMPLATE)
    assert ok.code == 0, ok.err


def test_unknown_batch_id_is_a_clear_error(cli):
    result = cli("retrieve", "msgbatch_doesnotexist")
    assert result.code == 2 and "no job or batch 'msgbatch_doesnotexist' is recorded here" in result.err
