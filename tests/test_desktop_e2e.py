"""A real job, end to end, to a real desktop: `tegbatchd submit` through the emulator, then `poll --once` or
the real `tegbatchd daemon`, and the "ready" notification in dunst (under Xvfb, on a private session bus);
a click on it opens the output folder with the configured open_command. Without any bus, the notice is
a line on stderr."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_requests
from tests.support.desktop import dunst_desktop, session_bus, stop_process, wait_until  # noqa: F401

# The real desktop: every `cli` call is a `python -m tegbatchd` process, as the person's would be.
pytestmark = pytest.mark.proc_cli

OUTPUT = "commentary/misc/{custom_id}.md"
FILES = 3
SLOW = 60.0  # generous: these machines can be loaded


def write_config(home: Path, **settings) -> Path:
    """TEGBATCHD_HOME/config/config.yaml with the given top-level settings."""
    path = home / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def opener(tmp_path):
    """An open_command that appends the folder it is asked to open to a file; returns (script, record)."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "bin" / "record-open"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n')
    script.chmod(0o755)
    return script, record


@pytest.fixture
def job(api_cli, tmp_path, data_root, opener):
    """A submitted requests job of FILES requests, not polled yet: (cli, title, output folder)."""
    cli, _ = api_cli("--process-seconds", "0")
    write_config(Path(cli.env["TEGBATCHD_HOME"]), poll_interval_minutes=0.02,
                 notifications={"open_command": str(opener[0])})
    label = f"e2e-{uuid.uuid4().hex[:8]}"  # dunst stacks identical notifications: keep the summary unique
    reqs = write_requests(tmp_path / "requests.jsonl", FILES)
    sub = cli("submit", "requests", str(reqs), "--output", OUTPUT, "--kind", label, "--json", check=True).json()
    assert label in sub["title"]
    return cli, sub["title"], (data_root / "commentary" / "misc").resolve()


def ready_entry(title: str, folder: Path) -> dict:
    return {"appname": "tegbatchd", "summary": f"{title} ready — {FILES} files", "body": f"Written under {folder}"}


COST = re.compile(r"\. Cost \$\d+\.\d{4}, saved \$\d+\.\d{4} against the standard API$")


def without_cost(entries: list[dict]) -> list[dict]:
    """Notifications with the cost sentence a ready notice ends with taken off (checked to be there)."""
    for entry in entries:
        assert COST.search(entry["body"]), entry
    return [{**e, "body": COST.sub("", e["body"])} for e in entries]


def bus_env(desktop) -> dict:
    return {"DBUS_SESSION_BUS_ADDRESS": desktop.bus.address, "DISPLAY": desktop.display}


def closed_history(desktop) -> list[dict]:
    """Close what is on screen, then return dunst's history (it lists closed notifications only)."""
    desktop.dunstctl("close-all")
    wait_until(lambda: int(desktop.dunstctl("count", "displayed")) == 0, what="dunst to close its notifications")
    return desktop.history()


def counts(desktop) -> dict[str, int]:
    return {what: int(desktop.dunstctl("count", what)) for what in ("displayed", "waiting", "history")}


def test_poll_once_shows_one_ready_notification(job, dunst_desktop):  # noqa: F811
    cli, title, folder = job
    poll = cli("poll", "--once", "--json", check=True, **bus_env(dunst_desktop)).json()
    assert poll["notifications_delivered"] == 1, poll
    assert sorted(p.name for p in folder.iterdir()) == [f"req-{i:05d}.md" for i in range(FILES)]
    assert without_cost(closed_history(dunst_desktop)) == [ready_entry(title, folder)]

    again = cli("poll", "--once", "--json", check=True, **bus_env(dunst_desktop)).json()
    assert again["notifications_delivered"] == 0  # notified once, never again
    assert counts(dunst_desktop) == {"displayed": 0, "waiting": 0, "history": 1}


def test_a_click_on_the_daemons_notification_opens_the_folder(job, dunst_desktop, opener):  # noqa: F811
    cli, title, folder = job
    _, record = opener
    log_file = Path(cli.env["TEGBATCHD_HOME"]) / "logs" / "tegbatchd.log"
    daemon = subprocess.Popen([sys.executable, "-m", "tegbatchd", "daemon", "--heartbeat", "0.2"],
                              env={**cli.env, **bus_env(dunst_desktop)}, cwd=cli.cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def shown():
            if daemon.poll() is not None:
                raise AssertionError(f"the daemon exited with {daemon.returncode}:\n{log_file.read_text()}")
            return int(dunst_desktop.dunstctl("count", "displayed")) >= 1

        wait_until(shown, timeout=SLOW, what="the ready notification on screen")
        dunst_desktop.dunstctl("action", "0")  # a click on the notification: its default action
        wait_until(record.exists, timeout=SLOW, what="the open_command to run")
        wait_until(lambda: record.read_text().endswith("\n"), what="the open_command to finish")
        assert record.read_text().splitlines() == [str(folder)]
        assert without_cost(closed_history(dunst_desktop)) == [ready_entry(title, folder)]
        assert counts(dunst_desktop) == {"displayed": 0, "waiting": 0, "history": 1}
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(SLOW) == 0
    finally:
        stop_process(daemon)
    assert "daemon stopped" in log_file.read_text()


def test_without_any_bus_the_notice_is_a_line_on_stderr(job, tmp_path):
    cli, title, folder = job
    runtime = tmp_path / "runtime"  # no $XDG_RUNTIME_DIR/bus either
    runtime.mkdir(mode=0o700)
    no_bus = {"DBUS_SESSION_BUS_ADDRESS": "", "DISPLAY": "", "WAYLAND_DISPLAY": "", "XDG_RUNTIME_DIR": str(runtime)}
    poll = cli("poll", "--once", **no_bus)
    assert poll.code == 0, poll.err
    assert "retrieved 3/3 successful, 3 file(s) written" in poll.out
    assert "desktop notifications off: no session bus" in poll.err
    assert f"notice: {title} ready — {FILES} files — Written under {folder}. Cost $" in poll.err
    assert f"against the standard API [{folder}]" in poll.err
    assert len(list(folder.iterdir())) == FILES

    again = cli("poll", "--once", **no_bus)  # logged counts as delivered: not repeated
    assert again.code == 0 and "Nothing pending." in again.out
    assert "notice:" not in again.err

