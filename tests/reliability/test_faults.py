"""Faults: 30% of API calls answer 429/500/529 and results streams are cut. Every job still finishes with
complete outputs after repeated `poll --once`, nothing is created twice, each poll's calls are bounded,
and a daemon facing an API that only fails backs off instead of hammering it."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.conftest import write_requests
from tests.reliability.support import assert_delivered, notices, query
from tests.support.forkserver import spawn

BATCHES = 4 + 3 + 6
SDK_ATTEMPTS = 3  # the SDK's 2 retries: at most this many HTTP calls per logical call


def _config(home, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.yaml").write_text(text)


def test_every_job_completes_through_faults_and_cut_streams(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--fault-rate", "0.3", "--seed", "11",
                       "--drop-results-after", "9", "--drop-results-times", "4")
    _config(_isolated_home, "batch_limits:\n  max_requests: 10\n")  # 13 batches: more calls, more faults
    jobs = {}
    for name, n in (("a", 40), ("b", 25), ("c", 60)):
        reqs = write_requests(tmp_path / f"{name}.jsonl", n, prefix=name)
        cli("submit", "requests", str(reqs), "--output", f"commentary/{name}/{{custom_id}}.md", check=True)
        jobs[name] = reqs
    db = _isolated_home / "state" / "state.db"
    per_cycle = []
    for _ in range(20):
        before = sum(emu.stats()["calls"].values())
        report = cli("poll", "--once", "--json", check=True).json()
        calls = sum(emu.stats()["calls"].values()) - before
        per_cycle.append(calls)
        assert calls <= SDK_ATTEMPTS * report["api_calls"]  # retries are bounded per call
        assert report["api_calls"] <= 3 + 3 * BATCHES  # a few calls per batch, never a loop
        if query(db, "SELECT count(*) FROM jobs WHERE state != 'done'") == [(0,)]:
            break
    for name, reqs in jobs.items():
        assert_delivered(data_root / "commentary" / name, reqs, data_root)
    stats = emu.stats()
    assert stats["batches_created"] == BATCHES  # a faulted create was never a second batch
    assert stats["faults_injected"] >= 10
    assert len(notices(db, "job_done")) == len(jobs)
    print(f"\nfaults injected: {stats['faults_injected']} of {sum(stats['calls'].values())} calls; "
          f"calls per poll cycle: {per_cycle}")


def test_daemon_backs_off_from_an_api_that_only_fails(api_cli, tmp_path, data_root, _isolated_home):
    cli, healthy = api_cli("--process-seconds", "100000")
    _config(_isolated_home, "poll_interval_minutes: 0.01\nmax_poll_interval_minutes: 0.05\n"
                            "notifications:\n  enabled: false\n")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", "x/{custom_id}.md",
        check=True)
    _, failing = api_cli("--fault-rate", "1")
    daemon = spawn(["daemon", "--heartbeat", "0.2"], env={**cli.env, "ANTHROPIC_BASE_URL": failing.url},
                   cwd=cli.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while failing.stats()["calls"]["list"] == 0:
            assert time.monotonic() < deadline and daemon.poll() is None
            time.sleep(0.1)
        start = time.monotonic()
        time.sleep(9)
        elapsed = time.monotonic() - start
        polls = failing.stats()["calls"]["list"] / SDK_ATTEMPTS
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]
    # Without back-off a poll would run every heartbeat (45 in 9 s); with it the waits double from
    # 0.6 s up to the 3 s cap: at most 1 + log2(5) + elapsed / 3 polls.
    assert 2 <= polls <= 4 + elapsed / 3, polls
    assert err.count("API problem, backing off") == 1
    print(f"\nback-off: {polls:.0f} polls in {elapsed:.1f} s against an API failing every call "
          f"({failing.stats()['faults_injected']} faults)")
