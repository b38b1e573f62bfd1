"""Offline: the API goes away twice while a batch runs (the emulator stops, then comes back on the same
port with its saved state). The daemon keeps running, logs the trouble once per episode, and catches up
when the API is back."""

from __future__ import annotations

import signal
import subprocess
import time
from contextlib import ExitStack

from tests.conftest import TEST_KEY, write_requests
from tests.reliability.support import assert_delivered
from tests.support.emulator import running_emulator
from tests.support.forkserver import spawn

PROBLEM = "API problem, backing off"
BACK = "API reachable again"


def _until(predicate, what: str, timeout: float = 60.0, daemon=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert daemon is None or daemon.poll() is None, "the daemon exited"
        time.sleep(0.1)


def test_daemon_rides_out_two_outages_and_catches_up(cli, tmp_path, data_root, _isolated_home):
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text(
        "poll_interval_minutes: 0.01\nmax_poll_interval_minutes: 0.02\nnotifications:\n  enabled: false\n")
    state = tmp_path / "emulator-state.json"
    log = _isolated_home / "logs" / "tegbatchd.log"
    reqs = write_requests(tmp_path / "r.jsonl", 50)
    with ExitStack() as stack:
        emu = stack.enter_context(running_emulator("--process-seconds", "100000", "--state", str(state)))
        port = emu.url.rsplit(":", 1)[1]
        env = {**cli.env, "ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": emu.url}
        bound = type(cli)(env, cli.cwd)
        batch = bound("submit", "requests", str(reqs), "--output", "commentary/misc/{custom_id}.md", "--json",
                      check=True).json()["batch_ids"][0]
        daemon = spawn(["daemon", "--heartbeat", "0.2"], env=env, cwd=cli.cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
        stack.callback(lambda: daemon.poll() is None and daemon.kill())
        _until(lambda: emu.stats()["calls"]["list"] > 0, "the first poll", daemon=daemon)

        def text() -> str:
            return log.read_text() if log.exists() else ""

        for episode in (1, 2):
            assert emu.stop() == 0  # saves its batches to the state file
            _until(lambda ep=episode: text().count(PROBLEM) == ep, f"outage {episode} to be logged", daemon=daemon)
            time.sleep(3)  # several failed polls (backing off) during the outage
            emu = stack.enter_context(running_emulator("--port", port, "--process-seconds", "100000",
                                                       "--state", str(state)))
            if episode == 2:
                emu.finish(batch)  # it ended while we were offline
            _until(lambda ep=episode: text().count(BACK) == ep, f"recovery {episode} to be logged", 90, daemon)
        folder = data_root / "commentary" / "misc"
        _until(lambda: len(list(folder.glob("*.md"))) == 50 if folder.exists() else False, "the outputs",
               daemon=daemon)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-3000:]
    assert_delivered(folder, reqs, data_root)
    logged = text()
    assert logged.count(PROBLEM) == 2 and logged.count(BACK) == 2  # once per episode, however many polls failed
    assert "Traceback" not in logged and "Traceback" not in err
