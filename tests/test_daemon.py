"""The daemon: polls at start, when due and right after a wake; one per state dir; SIGTERM-safe; light."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_KEY, assert_own_answer, request_params, write_requests
from tests.support.forkserver import Forked, spawn

TEMPLATE = "commentary/misc/{custom_id}.md"


class FakeClock:
    """Wall and monotonic clocks; jump() moves only the wall clock, as a sleep looks to a process."""

    def __init__(self):
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def _config(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.yaml").write_text(text)


async def _until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_polls_at_start_when_due_and_right_after_a_wake(api_cli, tmp_path, monkeypatch, _isolated_home):
    from tegbatchd.daemon import Daemon

    cli, emu = api_cli("--process-seconds", "100000")
    _config(_isolated_home, "poll_interval_minutes: 0.02\nnotifications:\n  enabled: false\n")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", TEMPLATE, check=True)
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
    clock = FakeClock()
    daemon = Daemon(clock=clock, heartbeat=0.1)

    async def scenario():
        task = asyncio.create_task(daemon.run())
        await _until(lambda: daemon.polls[:1] == ["start"])
        await _until(lambda: "due" in daemon.polls)  # the 1.2 s poll interval came round
        seen = len(daemon.polls)
        clock.jump(3600)
        # at most one poll was already under way when the clock jumped; the next one is the wake poll
        await _until(lambda: len(daemon.polls) > seen + 1 or daemon.polls[seen:] == ["wake"])
        assert "wake" in daemon.polls[seen:seen + 2]
        daemon.request_stop()
        assert await task == 0

    asyncio.run(scenario())
    assert emu.stats()["calls"]["list"] >= 3


def test_nothing_pending_means_no_api_call_and_no_sdk_loaded(tmp_path, _isolated_home):
    script = (
        "import asyncio, sys\n"
        "from tegbatchd.daemon import Daemon\n"
        "d = Daemon(heartbeat=0.05)\n"
        "async def main():\n"
        "    t = asyncio.create_task(d.run())\n"
        "    await asyncio.sleep(1.0)\n"
        "    d.request_stop()\n"
        "    await t\n"
        "asyncio.run(main())\n"
        "print('anthropic' in sys.modules, d.polls)\n"
    )
    env = {**os.environ, "TEGBATCHD_HOME": str(_isolated_home), "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
           "ANTHROPIC_API_KEY": TEST_KEY}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False ['start']"


def test_a_new_submission_is_noticed_and_retrieved(api_cli, tmp_path, monkeypatch, _isolated_home, data_root):
    from tegbatchd.daemon import Daemon

    cli, emu = api_cli("--process-seconds", "0")
    _config(_isolated_home, "poll_interval_minutes: 0.01\nnotifications:\n  enabled: false\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
    daemon = Daemon(heartbeat=0.2)
    reqs = write_requests(tmp_path / "r.jsonl", 3)

    async def scenario():
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cli, "submit", "requests", str(reqs), "--output", TEMPLATE, check=True)
        await _until(lambda: len(list((data_root / "commentary" / "misc").glob("*.md"))) == 3
                     if (data_root / "commentary" / "misc").exists() else False)
        daemon.request_stop()
        await task

    asyncio.run(scenario())
    for cid, params in request_params(reqs).items():
        assert_own_answer((data_root / "commentary" / "misc" / f"{cid}.md").read_text(), cid, params)


def test_network_trouble_is_logged_once_per_episode(api_cli, tmp_path, monkeypatch, _isolated_home, caplog):
    from tegbatchd.daemon import Daemon

    cli, emu = api_cli("--process-seconds", "100000")
    _config(_isolated_home, "poll_interval_minutes: 0.005\nmax_poll_interval_minutes: 0.005\n"
                            "notifications:\n  enabled: false\n")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", TEMPLATE, check=True)
    emu.stop()
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
    daemon = Daemon(heartbeat=0.05)
    caplog.set_level("INFO", logger="tegbatchd.daemon")

    async def scenario():
        task = asyncio.create_task(daemon.run())
        await _until(lambda: daemon.polls.count("retry") >= 2, timeout=120)
        daemon.request_stop()
        await task

    asyncio.run(scenario())
    problems = [r for r in caplog.records if "API problem" in r.getMessage()]
    assert len(problems) == 1


def _start_daemon(cli, extra_env=None) -> Forked:
    """A real daemon process (forked from the warm fork server: its signals and locks are what is tested)."""
    env = {**cli.env, **(extra_env or {})}
    return spawn(["daemon", "--heartbeat", "0.2"], env=env, cwd=cli.cwd, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)


def test_a_second_daemon_refuses_to_start(cli, _isolated_home):
    first = _start_daemon(cli)
    try:
        deadline = time.monotonic() + 120
        lock = _isolated_home / "state" / "daemon.lock"
        log = _isolated_home / "logs" / "tegbatchd.log"  # "daemon started": its SIGTERM handler is in place
        while not (lock.exists() and lock.read_text().strip() and log.exists() and "daemon started" in log.read_text()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = cli("daemon", subprocess=True)  # the single-instance check is between processes
        assert second.code == 1
        assert "another tegbatchd daemon is already running" in second.err and str(first.pid) in second.err
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_sigterm_during_a_retrieval_leaves_no_partial_file(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0", "--answer-bytes", "4000")
    _config(_isolated_home, "notifications:\n  enabled: false\n")
    reqs = write_requests(tmp_path / "r.jsonl", 4000)
    cli("submit", "requests", str(reqs), "--output", TEMPLATE, check=True)
    daemon = _start_daemon(cli)
    folder = data_root / "commentary" / "misc"
    try:
        deadline = time.monotonic() + 240
        while not (folder.exists() and len(os.listdir(folder)) > 50):
            assert time.monotonic() < deadline and daemon.poll() is None
            time.sleep(0.01)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    partial = sorted(folder.glob("*.md"))
    assert 0 < len(partial) < 4000, "the signal should land mid-retrieval"
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
    params = request_params(reqs)
    for path in partial:
        assert_own_answer(path.read_text(), path.stem, params[path.stem])
    cli("poll", "--once", check=True)
    assert len(list(folder.glob("*.md"))) == 4000
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
