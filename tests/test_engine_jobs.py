"""The job engine end to end (issue 10's eight points): real CLI, real SDK over HTTP, the emulator."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

from tests.conftest import TEST_KEY, untagged_counts, write_requests
from tests.support.emulator import running_emulator
from tests.support.forkserver import spawn

RR = "commentary/round_reports"




def _store():
    from tegbatchd.store import Store

    state = Path(os.environ["TEGBATCHD_HOME"]) / "state"
    state.mkdir(parents=True, exist_ok=True)
    return Store.open(state / "state.db")


def _bound(cli, url: str):
    return type(cli)({**cli.env, "ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": url}, cli.cwd)


def _poll_until_settled(cli, times: int = 6) -> dict:
    for _ in range(times):
        cli("poll", "--once", check=True)
        job = cli("list", "--json", check=True).json()["jobs"][0]
        if job["state"] != "active":
            return job
    return job


def _attempts(store, job_id: str) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for r in store.job_requests(job_id):
        out.setdefault(r["custom_id"], []).append(r["outcome"])
    return out


def test_retry_of_a_multi_stage_job_builds_the_later_stage_for_what_was_missing_only(cli, tmp_path, real_data):
    """Points 3 and 4: one `retry JOB` resends every failed request of the job; the narratives are built
    for exactly the retried rounds; a second retry, or a retry of a finished stage's batch, sends nothing."""
    state = tmp_path / "emu.json"
    with ExitStack() as stack:
        emu = stack.enter_context(running_emulator("--process-seconds", "0", "--state", str(state),
                                                   "--error-rate", "1", "--error-type", "overloaded_error"))
        port = emu.url.rsplit(":", 1)[1]
        bound = _bound(cli, emu.url)
        sub = bound("submit", "round-reports", "--teg", "17", "--round", "1-4", "--json", check=True).json()
        job = _poll_until_settled(bound)
        # every story note failed twice (retry.max_attempts 2: once by itself), nothing later was built
        assert job["state"] == "failed" and job["written"] == 0 and len(job["failed"]) == 4
        assert job["next"] == f"tegbatchd retry {job['id']}"
        notices = _store().notices()
        assert [n["kind"] for n in notices] == ["job_failed"]
        assert notices[0]["title"] == "TEG 17 round reports: 0 of 12 files ready"
        assert "4 request(s) failed after 2 attempts (overloaded_error)" in notices[0]["body"]
        assert emu.stop() == 0
        emu = stack.enter_context(running_emulator("--port", port, "--process-seconds", "0", "--state", str(state)))
        out = bound("retry", sub["batch_ids"][0], check=True).out  # any batch id of the job names the job
        assert "Resubmitted 4 request(s)" in out
        again = bound("retry", job["id"], check=True).out            # back to back: nothing more to send
        assert "Nothing to retry" in again
        job = _poll_until_settled(bound)
        assert job["state"] == "done" and job["written"] == 12 and job["failed"] == []
        attempts = _attempts(_store(), job["id"])
        for r in range(1, 5):
            assert attempts[f"TEG17_R{r}_story_notes"] == ["errored", "errored", "succeeded"]
            assert attempts[f"TEG17_R{r}_narrative"] == ["succeeded"]   # built once, for the retried notes
            assert (real_data / RR / f"teg_17_round_{r}_report.md").exists()
        narrative_batch = [b for b in job["batches"] if b["stage"] == "narrative"][0]["id"]
        creates = emu.stats()["calls"]["create"]
        assert "Nothing to retry" in bound("retry", narrative_batch, check=True).out
        assert emu.stats()["calls"]["create"] == creates  # no success is ever sent again
        kinds = [n["kind"] for n in _store().notices()]
        assert kinds == ["job_failed", "job_done"]
        assert _store().notices()[-1]["title"] == "TEG 17 round reports ready — 12 files"


def test_two_retries_at_once_send_each_failed_request_once(cli, tmp_path, data_root):
    """Point 4: retry holds the job's lock; two at once resubmit the failures once between them."""
    state = tmp_path / "emu.json"
    with ExitStack() as stack:
        emu = stack.enter_context(running_emulator("--process-seconds", "0", "--state", str(state),
                                                   "--expire-rate", "1"))
        port = emu.url.rsplit(":", 1)[1]
        bound = _bound(cli, emu.url)
        reqs = write_requests(tmp_path / "r.jsonl", 6)
        bound("submit", "requests", str(reqs), "--output", "commentary/misc/{custom_id}.md", check=True)
        job = _poll_until_settled(bound)
        assert job["state"] == "failed"
        assert emu.stop() == 0
        emu = stack.enter_context(running_emulator("--port", port, "--process-seconds", "0", "--state", str(state)))
        procs = [spawn(["retry", job["id"], "--json"], env=bound.env, cwd=bound.cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        assert emu.stats()["calls"]["create"] == 1
        job = _poll_until_settled(bound)
        assert job["state"] == "done" and job["written"] == 6
        assert all(a[-1] == "succeeded" and a.count("succeeded") == 1 for a in _attempts(_store(), job["id"]).values())


def test_results_archived_before_retrieval_become_failures_that_retry_resends(api_cli, tmp_path, data_root):
    """Point 5: no loop between `retrieve` and `retry`: archived results are failures of kind archived."""
    cli, emu = api_cli("--process-seconds", "0", "--retention-seconds", "100")
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    sub = cli("submit", "requests", str(reqs), "--output", "commentary/misc/{custom_id}.md", "--json", check=True)
    emu.advance(200)
    job = _poll_until_settled(cli, 2)
    assert job["state"] == "failed" and job["written"] == 0
    assert {f["reason"] for f in job["failures"]} == {"archived"}
    out = cli("retrieve", sub.json()["batch_ids"][0])
    assert out.code == 0 and "tegbatchd retry" in out.out
    assert "Resubmitted 3 request(s)" in cli("retry", job["id"], check=True).out
    job = _poll_until_settled(cli)
    assert job["state"] == "done" and job["written"] == 3


def test_one_job_per_output(api_cli, real_data):
    """Point 6: the same TEG job twice is refused, naming the first (`--again` sends anyway); reports-only
    while the notes are still being written says to wait."""
    cli, emu = api_cli("--process-seconds", "100000")
    first = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--json", check=True).json()
    twice = cli("submit", "round-reports", "--teg", "17", "--round", "1-2")
    assert twice.code == 2 and first["job_id"] in twice.err and "--again" in twice.err
    assert "Traceback" not in twice.err and emu.stats()["calls"]["create"] == 1
    reports = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--reports-only")
    assert reports.code == 2 and f"still being written by job {first['job_id']}" in reports.err
    assert "wait for it" in reports.err
    forced = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--again", "--json", check=True).json()
    assert forced["job_id"] != first["job_id"] and emu.stats()["calls"]["create"] == 2


def test_retry_with_a_rejected_key_is_one_line(cli, tmp_path, data_root):
    """Point 7: every API error reaches the person as one line and an exit code, from any command."""
    with running_emulator("--process-seconds", "0", "--expire-rate", "1", "--api-key", TEST_KEY) as emu:
        bound = _bound(cli, emu.url)
        bound("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output",
              "commentary/misc/{custom_id}.md", check=True)
        job = _poll_until_settled(bound)
        wrong = type(cli)({**bound.env, "ANTHROPIC_API_KEY": "sk-ant-wrong"}, cli.cwd)
        for args in (["retry", job["id"]], ["status", job["batches"][0]["id"]], ["cancel", job["id"]]):
            result = wrong(*args)
            assert "Traceback" not in result.err, args
            if args[0] != "retry":  # cancel of an ended job, status of a retrieved batch: no API call needed
                assert result.code == 0, (args, result.err)
            else:
                assert result.code == 5 and result.err.count("\n") == 1 and "key was rejected" in result.err, args


def test_a_canceled_job_ends_canceled_with_one_notice(api_cli, tmp_path, data_root):
    """Point 8: a deliberate cancel is not a failure, and nothing suggests a command that would do nothing."""
    cli, emu = api_cli("--process-seconds", "100000", "--cancel-seconds", "0")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output",
              "commentary/misc/{custom_id}.md", "--json", check=True).json()
    cli("cancel", sub["job_id"], check=True)
    job = _poll_until_settled(cli)
    assert job["state"] == "canceled" and job["next"] is None
    (notice,) = _store().notices()
    assert notice["kind"] == "job_canceled" and "canceled" in notice["title"] and "msgbatch_" not in notice["title"]


def test_a_cancel_that_comes_after_the_batch_ended_changes_nothing(api_cli, tmp_path, data_root):
    """Listed as running, ended on the API by the time of the cancel: the API refuses the cancel; the person is
    told it had ended; the job ends done with every file (not `canceled`)."""
    cli, emu = api_cli("--process-seconds", "60")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output",
              "commentary/misc/{custom_id}.md", "--json", check=True).json()
    emu.advance(120)   # it ends on the API; nothing has polled since
    canceled = cli("cancel", sub["job_id"])
    assert canceled.code == 0, canceled.err
    assert f"{sub['batch_ids'][0]}: had already ended, nothing to cancel" in canceled.out
    job = _poll_until_settled(cli)
    assert job["state"] == "done" and job["written"] == 3 and job["failed"] == []
    assert [n["kind"] for n in _store().notices()] == ["job_done"]


def test_a_job_that_cannot_go_on_is_blocked_and_the_others_go_on(api_cli, tmp_path, real_data):
    """Point 2: an OSError in assembly (a folder where a combined file goes) blocks that job with a reason
    and one notice; another job still finishes; `poll --once` shows one line, never a traceback; once
    fixed, `retry JOB` goes on."""
    cli, emu = api_cli("--process-seconds", "0")
    (real_data / RR / "teg_17_round_1_report.md").mkdir(parents=True)
    teg = cli("submit", "round-reports", "--teg", "17", "--round", "1", "--json", check=True).json()
    other = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output",
                "commentary/misc/{custom_id}.md", "--json", check=True).json()
    for _ in range(3):
        polled = cli("poll", "--once")
        assert polled.code == 0 and "Traceback" not in polled.out + polled.err
    jobs = {j["id"]: j for j in cli("list", "--json", check=True).json()["jobs"]}
    assert jobs[other["job_id"]]["state"] == "done"
    blocked = jobs[teg["job_id"]]
    assert blocked["state"] == "blocked" and "teg_17_round_1_report.md" in blocked["blocked_reason"]
    assert blocked["next"] == f"tegbatchd retry {teg['job_id']}"
    notices = [n for n in _store().notices() if n["job_id"] == teg["job_id"]]
    assert [n["kind"] for n in notices] == ["job_blocked"]
    (real_data / RR / "teg_17_round_1_report.md").rmdir()
    assert "going on" in cli("retry", teg["job_id"], check=True).out
    job = {j["id"]: j for j in cli("list", "--json", check=True).json()["jobs"]}[teg["job_id"]]
    assert job["state"] == "done" and job["written"] == 3


def test_a_requests_job_killed_before_its_stage_was_recorded_is_rebuilt(api_cli, tmp_path, data_root):
    """Point 2: `submit requests` interrupted between recording its job and its requests: the next poll
    builds the stage from the recorded spec (no "has no stage to build" crash at every start)."""
    cli, emu = api_cli("--process-seconds", "0")
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    store = _store()
    store.create_job("job_killed", "requests", "requests from r.jsonl",
                     {"source": str(reqs), "output": "commentary/misc/{custom_id}.md", "label": None},
                     str(data_root.resolve()), ["requests"])
    job = _poll_until_settled(cli, 3)
    assert job["state"] == "done" and job["written"] == 3
    params = {f"req-{i:05d}" for i in range(3)}
    assert {p.stem for p in (data_root / "commentary" / "misc").glob("*.md")} == params


def test_an_open_intent_whose_archive_was_deleted_fails_its_requests_without_a_crash(api_cli, tmp_path, data_root):
    """Point 2: an open intent that can never be sent (its archive is gone) becomes failures, not a crash
    at every poll (as a submit killed between recording and creating leaves it, then the archive lost)."""
    from tegbatchd.store import PlannedIntent

    cli, emu = api_cli("--process-seconds", "0")
    store = _store()
    store.create_job("job_lost", "requests", "requests from r.jsonl", {"source": "gone", "output": "x/{custom_id}"},
                     str(data_root.resolve()), ["requests"])
    stage = store.stages("job_lost")[0]
    archive = tmp_path / "never-written.jsonl"
    store.record_stage(stage["id"], [PlannedIntent(str(archive), 10, [("a", str(data_root / "x" / "a"), "m", 5),
                                                                      ("b", str(data_root / "x" / "b"), "m", 5)])], [])
    polled = cli("poll", "--once")
    assert polled.code == 0 and "Traceback" not in polled.out + polled.err
    job = _poll_until_settled(cli, 2)
    assert job["state"] == "failed" and {f["reason"] for f in job["failures"]} == {"archive_missing"}
    assert emu.stats()["calls"]["create"] == 0


def test_a_submit_to_an_unreachable_api_records_nothing_and_says_so(cli, tmp_path, data_root):
    """Truthful submit: nothing reached the API, so nothing is recorded and nobody is told to close the
    laptop (the models are asked before anything is recorded)."""
    import socket

    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    offline = _bound(cli, f"http://127.0.0.1:{port}")
    sub = offline("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output",
                  "commentary/misc/{custom_id}.md")
    assert sub.code == 4 and "unreachable" in sub.err and "close your laptop" not in sub.out
    assert cli("list", "--json", check=True).json()["jobs"] == []


def test_answers_cut_at_max_tokens_are_named_and_resent_with_more_room(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--max-tokens-rate", "1")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2, max_tokens=100)), "--output",
              "commentary/misc/{custom_id}.md", "--json", check=True).json()
    job = _poll_until_settled(cli)
    assert job["state"] == "done" and sorted(job["truncated"]) == ["req-00000", "req-00001"]
    (notice,) = _store().notices()
    assert f"tegbatchd retry {sub['job_id']} --truncated" in notice["body"]
    assert "stopped at max_tokens" in cli("list", check=True).out
    assert "Resubmitted 2 request(s)" in cli("retry", sub["job_id"], "--truncated", check=True).out
    job = _poll_until_settled(cli)
    latest = [r for r in _store().job_requests(sub["job_id"]) if r["retried_by"] is None]
    assert sorted(r["max_tokens"] for r in latest) == [200, 200]    # retry.truncated_factor 2
    assert all(r["outcome"] == "succeeded" and r["attempt"] == 2 for r in latest)
    assert job["state"] == "done" and emu.stats()["calls"]["create"] == 2


def test_failures_that_will_not_heal_wait_for_the_person_and_the_hint_is_the_command_that_helps(
        api_cli, tmp_path, data_root):
    """Point 8: invalid requests are not resubmitted by themselves; the notice never suggests a command
    that would do nothing (`retry JOB` would leave them out: it says --all-errors, after fixing the cause)."""
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "1", "--error-type", "invalid_request_error")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output",
              "commentary/misc/{custom_id}.md", "--json", check=True).json()
    job = _poll_until_settled(cli)
    assert job["state"] == "failed" and len(job["batches"]) == 1          # never resubmitted by itself
    (notice,) = _store().notices()
    assert notice["body"].endswith(f"fix the cause, then tegbatchd retry {sub['job_id']} --all-errors. "
                                   "Cost $0.0000, saved $0.0000 against the standard API")
    assert job["next"] == f"fix the cause, then tegbatchd retry {sub['job_id']} --all-errors"
    plain = cli("retry", sub["job_id"], check=True).out
    assert "Nothing to retry" in plain and "3 invalid_request_error" in plain and "--all-errors" in plain
    assert emu.stats()["calls"]["create"] == 1
    assert "Resubmitted 3 request(s)" in cli("retry", sub["job_id"], "--all-errors", check=True).out
    assert emu.stats()["calls"]["create"] == 2

def _replay(path: Path, results: dict[str, str]) -> Path:
    """A results file the emulator serves to the batch of exactly these custom_ids ("ok" or an error type)."""
    lines = []
    for cid, result in results.items():
        if result == "ok":
            message = {"id": f"msg_{cid}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                       "content": [{"type": "text", "text": f"replayed answer of {cid}"}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 5}}
            lines.append({"custom_id": cid, "result": {"type": "succeeded", "message": message}})
        else:
            lines.append({"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": result, "message": "Overloaded"}}}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_one_retry_of_failures_in_two_stages_builds_what_the_earlier_failure_left_unplanned(cli, tmp_path, real_data):
    """Found by the kill suite: R1's story notes failed (so R1's narrative was never planned) and R2's
    narrative failed; one `retry JOB` resent both, the narrative stage was not rebuilt, and the job ended
    `done` without R1's report. Now the later stage is rebuilt once the earlier one settles."""
    notes, narrative = "TEG17_R{}_story_notes", "TEG17_R{}_narrative"
    replays = [_replay(tmp_path / "first.jsonl", {notes.format(1): "overloaded_error", notes.format(2): "ok"}),
               _replay(tmp_path / "again.jsonl", {notes.format(1): "overloaded_error"}),
               _replay(tmp_path / "narrative.jsonl", {narrative.format(2): "overloaded_error"})]
    state = tmp_path / "emu.json"
    with ExitStack() as stack:
        args = ["--process-seconds", "0", "--state", str(state)]
        emu = stack.enter_context(running_emulator(*args, *[a for p in replays for a in ("--replay-results", str(p))]))
        port = emu.url.rsplit(":", 1)[1]
        bound = _bound(cli, emu.url)
        bound("submit", "round-reports", "--teg", "17", "--round", "1-2", check=True)
        job = _poll_until_settled(bound)
        assert job["state"] == "partial" and sorted(job["failed"]) == [
            notes.format(1), narrative.format(2)]
        assert emu.stop() == 0
        emu = stack.enter_context(running_emulator("--port", port, *args))
        assert "Resubmitted 2 request(s)" in bound("retry", job["id"], check=True).out
        job = _poll_until_settled(bound)
        received = untagged_counts(emu.received())
    folder = real_data / RR
    assert job["state"] == "done" and job["failed"] == []
    assert sorted(p.name for p in folder.glob("*.md")) == sorted(
        f"{name}.md" for r in (1, 2) for name in (f"TEG17_R{r}_story_notes", f"TEG17_R{r}_report",
                                                   f"teg_17_round_{r}_report"))
    # after the restart: R1's notes, R1's narrative (built now) and R2's narrative, each sent once
    assert received == {notes.format(1): 1, narrative.format(1): 1, narrative.format(2): 1}


def test_an_intent_never_sent_is_not_matched_with_another_intents_lost_create(api_cli, tmp_path, data_root):
    """Found by the kill suite (seed 9854096): job A's intent was recorded but never sent (killed before its
    create), job B's create was made but its batch id not recorded (killed after the create). Reconcile
    matched A with B's batch by request count and sent B's requests again. Only an intent whose create was
    attempted is looked for; one never attempted is simply sent."""
    import httpx2

    from tegbatchd.store import PlannedIntent
    from tegbatchd.submission import _body

    cli, emu = api_cli("--process-seconds", "0")
    store = _store()
    intents = {}
    for job in ("a", "b"):
        reqs = write_requests(tmp_path / f"{job}.jsonl", 2, prefix=job)
        archive = tmp_path / f"{job}-archive.jsonl"
        archive.write_bytes(reqs.read_bytes())
        store.create_job(f"job_{job}", "requests", f"requests {job}",
                         {"source": str(reqs), "output": f"{job}/{{custom_id}}.md", "label": None},
                         str(data_root.resolve()), ["requests"])
        stage = store.stages(f"job_{job}")[0]
        rows = [(f"{job}-{i:05d}", str(data_root.resolve() / job / f"{job}-{i:05d}.md"), "claude-haiku-4-5", 1000)
                for i in range(2)]
        (intents[job],) = store.record_stage(stage["id"], [PlannedIntent(str(archive), 10, rows)], [])
    store.mark_attempted(intents["b"])               # B's create went out; its answer was lost
    answer = httpx2.post(f"{emu.url}/v1/messages/batches", content=_body(tmp_path / "b-archive.jsonl"),
                         headers={"x-api-key": "sk-ant-test-0000", "anthropic-version": "2023-06-01",
                                  "content-type": "application/json"}, trust_env=False)
    assert answer.status_code == 200
    job_a = _poll_until_settled(cli, 3)
    received = emu.received()
    assert received == {"a-00000": 1, "a-00001": 1, "b-00000": 1, "b-00001": 1}   # nothing sent twice
    states = {j["id"]: j["state"] for j in cli("list", "--json", check=True).json()["jobs"]}
    assert states == {"job_a": "done", "job_b": "done"}, job_a
    for job in ("a", "b"):
        for i in range(2):
            assert (data_root / job / f"{job}-{i:05d}.md").exists()
