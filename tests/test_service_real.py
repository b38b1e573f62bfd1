"""The installed service, for real: a private `systemd --user` manager runs the unit that `tegbatchd service
install` wrote, with the REAL `tegbatchd` entry point, against the emulator; dunst (started by the same
manager, on its own session bus at $XDG_RUNTIME_DIR/bus, under Xvfb) shows the "ready" notification.

The service gets what a person's setup gives it, nothing more: the API key through api_key_file in the
config (never in the unit), the emulator's URL through ANTHROPIC_BASE_URL (carried into the unit at install
time, like a gateway's would be), the session bus found at $XDG_RUNTIME_DIR/bus. The unit is not edited:
the job is submitted before the service starts, and the daemon's start-up poll (or one run of the
timer's service) picks it up.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, write_requests
from tests.support.desktop import (  # noqa: F401
    DUNSTRC,
    Desktop,
    UserManager,
    _start_xvfb,
    require,
    stop_process,
    user_manager,
    wait_until,
)
from tests.test_desktop_e2e import (  # noqa: F401
    FILES,
    OUTPUT,
    counts,
    opener,
    ready_entry,
    without_cost,
    write_config,
)

# The real desktop: every `cli` call is a `python -m tegbatchd` process, as the person's would be.
pytestmark = pytest.mark.proc_cli

TEGBATCHD = [sys.executable, "-m", "tegbatchd"]
SLOW = 90.0  # generous: a loaded machine imports the SDK slowly


@pytest.fixture
def manager_desktop(user_manager) -> Iterator[Desktop]:  # noqa: F811
    """Xvfb, and dunst started as a unit of the user manager on the manager's own session bus."""
    require("Xvfb", "dunst", "dunstctl")
    bus = user_manager.runtime / "bus"
    wait_until(bus.is_socket, what="the user manager's session bus (dbus.socket)")
    xvfb, display = _start_xvfb()
    try:
        conf = user_manager.home / ".config" / "dunst" / "dunstrc"
        conf.parent.mkdir(parents=True)
        conf.write_text(DUNSTRC)
        user_manager.systemctl("set-environment", f"DISPLAY={display}")  # what a desktop session exports
        user_manager.systemctl("start", "dunst.service")  # Type=dbus: returns once dunst owns the name
        env = {"PATH": os.environ["PATH"], "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}", "DISPLAY": display}
        yield Desktop(None, display, env)
        user_manager.systemctl("stop", "dunst.service", check=False)
    finally:
        stop_process(xvfb)


@pytest.fixture
def setup(api_cli, tmp_path, data_root, opener, manager_desktop, user_manager):  # noqa: F811
    """A submitted job (not polled), the config the service reads, and the shell `service install` runs in."""
    cli, emu = api_cli("--process-seconds", "0")
    # A safety net: should ANTHROPIC_BASE_URL ever stop reaching the unit, the service must fail on a dead
    # loopback port, never fall back to the real API (the unit's Environment= wins over the manager's).
    user_manager.systemctl("set-environment", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
    home = Path(cli.env["TEGBATCHD_HOME"])
    key_file = tmp_path / "anthropic-key"
    key_file.write_text(TEST_KEY + "\n")
    key_file.chmod(0o600)
    write_config(home, api_key_file=str(key_file), poll_interval_minutes=0.02,
                 notifications={"open_command": str(opener[0])})
    label = f"svc-{uuid.uuid4().hex[:8]}"
    reqs = write_requests(tmp_path / "requests.jsonl", FILES)
    title = cli("submit", "requests", str(reqs), "--output", OUTPUT, "--kind", label, "--json",
                check=True).json()["title"]
    shell = {"TEGBATCHD_HOME": str(home), "TEGBATCHD_DATA_DIR": str(data_root), "DISPLAY": manager_desktop.display,
             "ANTHROPIC_BASE_URL": emu.url, "ANTHROPIC_API_KEY": TEST_KEY}  # the key must not travel
    return {"title": title, "folder": (data_root / "commentary" / "misc").resolve(), "shell": shell,
            "log": home / "logs" / "tegbatchd.log", "url": emu.url}


def unit_text(manager: UserManager, name: str) -> str:
    return (manager.home / ".config" / "systemd" / "user" / name).read_text()


def assert_unit_environment(text: str, url: str) -> None:
    assert f"ExecStart={Path(sys.executable).parent / 'tegbatchd'} " in text  # the real entry point
    assert f'Environment="ANTHROPIC_BASE_URL={url}"' in text
    assert TEST_KEY not in text and "ANTHROPIC_API_KEY" not in text


def waiting(manager: UserManager, unit: str, log: Path):
    """wait_until, with the unit's status and the daemon's log in the message when it times out."""

    def wait(check, what: str, timeout: float = SLOW):
        try:
            return wait_until(check, timeout=timeout, what=what, interval=0.2)
        except TimeoutError as exc:
            status = manager.systemctl("status", "--no-pager", unit, check=False).stdout
            logged = log.read_text() if log.exists() else "(no log)"
            raise AssertionError(f"{exc}\n--- {unit}:\n{status}\n--- {log}:\n{logged}") from None

    return wait


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


EXPECTED_FILES = [f"req-{i:05d}.md" for i in range(FILES)]


def test_the_installed_daemon_writes_the_files_and_its_notification_opens_the_folder(
        user_manager, manager_desktop, setup, opener):  # noqa: F811
    desktop, folder, (_, record) = manager_desktop, setup["folder"], opener
    out = user_manager.run([*TEGBATCHD, "service", "install"], env=setup["shell"]).stdout
    assert "tegbatchd.service: active" in out
    assert_unit_environment(unit_text(user_manager, "tegbatchd.service"), setup["url"])
    wait = waiting(user_manager, "tegbatchd.service", setup["log"])

    wait(lambda: written(folder) == EXPECTED_FILES, "the service to write the outputs")
    wait(lambda: int(desktop.dunstctl("count", "displayed")) >= 1, "the ready notification on screen")
    desktop.dunstctl("action", "0")  # a click: the daemon, alive under systemd, runs the open_command
    wait(lambda: record.exists() and record.read_text().endswith("\n"), "the open_command to run")
    assert record.read_text().splitlines() == [str(folder)]
    desktop.dunstctl("close-all")
    wait(lambda: int(desktop.dunstctl("count", "displayed")) == 0, "dunst to close the notification")
    assert without_cost(desktop.history()) == [ready_entry(setup["title"], folder)]
    assert user_manager.systemctl("is-active", "tegbatchd.service").stdout.strip() == "active"

    user_manager.systemctl("stop", "tegbatchd.service")
    result = user_manager.systemctl("show", "--property=Result,ExecMainStatus", "tegbatchd.service").stdout
    assert result.split() == ["Result=success", "ExecMainStatus=0"]
    assert "daemon stopped" in setup["log"].read_text()
    assert "ran: systemctl --user disable --now tegbatchd.service" in user_manager.run(
        [*TEGBATCHD, "service", "uninstall"], env=setup["shell"]).stdout


def test_the_installed_timer_service_writes_the_files_and_notifies_once(
        user_manager, manager_desktop, setup):  # noqa: F811
    desktop, folder = manager_desktop, setup["folder"]
    out = user_manager.run([*TEGBATCHD, "service", "install", "--timer"], env=setup["shell"]).stdout
    assert "tegbatchd-poll.timer: active" in out
    assert_unit_environment(unit_text(user_manager, "tegbatchd-poll.service"), setup["url"])

    def run_poll() -> None:  # what the timer does every 5 minutes (a oneshot: start returns when it is done)
        user_manager.run(["systemctl", "--user", "start", "tegbatchd-poll.service"], timeout=SLOW * 2)
        show = user_manager.systemctl("show", "--property=Result", "tegbatchd-poll.service").stdout.strip()
        assert show == "Result=success"

    run_poll()
    assert written(folder) == EXPECTED_FILES
    desktop.dunstctl("close-all")
    wait_until(lambda: int(desktop.dunstctl("count", "displayed")) == 0, what="dunst to close the notification")
    assert without_cost(desktop.history()) == [ready_entry(setup["title"], folder)]

    run_poll()  # nothing new: no second notification
    assert counts(desktop) == {"displayed": 0, "waiting": 0, "history": 1}
    assert user_manager.systemctl("is-active", "tegbatchd-poll.timer").stdout.strip() == "active"
    user_manager.run([*TEGBATCHD, "service", "uninstall"], env=setup["shell"])
    assert user_manager.systemctl("is-active", "tegbatchd-poll.timer", check=False).stdout.strip() == "inactive"
