"""Daily use on a real desktop (dunst under Xvfb on a private session bus): `submit --wait` and `--now`
show their own notification at once, exactly once; a click on the notification (dunst: a middle click by
default, a left click with `mouse_left_click = do_action, close_current`) opens the output folder. In CI a
missing tool fails these tests (tests/support/desktop.require)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_requests
from tests.support.desktop import (  # noqa: F401
    DUNSTRC,
    Desktop,
    dunst_desktop,
    require,
    running_dunst,
    session_bus,
    stop_process,
    wait_until,
)
from tests.test_desktop_e2e import bus_env, closed_history, counts, opener, write_config  # noqa: F401

pytestmark = pytest.mark.proc_cli
OUTPUT = "commentary/misc/{custom_id}.md"
SLOW = 60.0


def ready_body(body: str, folder) -> str:
    """A ready notice's body without the cost sentence it ends with (checked to be there)."""
    text, sep, cost = body.partition(". Cost $")
    assert sep and re.fullmatch(r"\d+\.\d{4}, saved \$\d+\.\d{4} against the standard API", cost), body
    return text


def _label() -> str:
    return f"daily-{uuid.uuid4().hex[:8]}"  # dunst stacks identical notifications: keep each summary unique


def test_submit_wait_shows_its_notification_itself_and_once(api_cli, tmp_path, data_root, dunst_desktop):  # noqa: F811
    cli, _ = api_cli("--process-seconds", "1")
    label = _label()
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    env = bus_env(dunst_desktop)
    waited = cli("submit", "requests", str(reqs), "--output", OUTPUT, "--kind", label, "--wait", **env)
    assert waited.code == 0, waited.err
    assert int(dunst_desktop.dunstctl("count", "displayed")) == 1   # on screen before any poll
    folder = (data_root / "commentary" / "misc").resolve()
    again = cli("poll", "--once", "--json", check=True, **env).json()
    assert again["notifications_delivered"] == 0
    (shown,) = closed_history(dunst_desktop)
    assert {**shown, "body": ready_body(shown["body"], folder)} == {
        "appname": "tegbatchd", "summary": f"{label} from r.jsonl ready — 3 files", "body": f"Written under {folder}"}
    assert counts(dunst_desktop) == {"displayed": 0, "waiting": 0, "history": 1}


def test_submit_now_shows_its_notification_itself_and_once(api_cli, real_data, dunst_desktop):  # noqa: F811
    cli, _ = api_cli("--process-seconds", "0")
    env = bus_env(dunst_desktop)
    now = cli("submit", "round-reports", "--teg", "17", "--round", "2", "--now", **env)
    assert now.code == 0, now.err
    assert int(dunst_desktop.dunstctl("count", "displayed")) == 1
    assert cli("poll", "--once", "--json", check=True, **env).json()["notifications_delivered"] == 0
    history = closed_history(dunst_desktop)
    assert len(history) == 1 and history[0]["summary"].startswith("TEG 17"), history
    assert history[0]["summary"].endswith(" ready — 3 files"), history  # story notes, report, combined file
    assert counts(dunst_desktop)["history"] == 1


LEFT_CLICK_OPENS = DUNSTRC + """[global]
    mouse_left_click = do_action, close_current
"""


@pytest.fixture
def dunst_left_click(session_bus, tmp_path, monkeypatch) -> Iterator[Desktop]:  # noqa: F811
    """Like dunst_desktop, with the dunstrc line the README gives for a left click that opens."""
    require("Xvfb", "dunst", "dunstctl", "xdotool")
    yield from running_dunst(session_bus, tmp_path, monkeypatch, LEFT_CLICK_OPENS)


def click_popup(desktop: Desktop, button: int) -> None:
    """Click with the mouse on dunst's popup window (found by its class)."""
    found = subprocess.run(["xdotool", "search", "--sync", "--classname", "Dunst"], env=desktop.env,
                           capture_output=True, text=True, timeout=20)
    window = found.stdout.split()[0]
    subprocess.run(["xdotool", "mousemove", "--window", window, "20", "10", "click", str(button)], env=desktop.env,
                   check=True, timeout=20)


def _daemon_job(api_cli, tmp_path, data_root, opener, desktop):  # noqa: F811
    cli, _ = api_cli("--process-seconds", "0")
    write_config(Path(cli.env["TEGBATCHD_HOME"]), poll_interval_minutes=0.02,
                 notifications={"open_command": str(opener[0])})
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    cli("submit", "requests", str(reqs), "--output", OUTPUT, "--kind", _label(), check=True)
    daemon = subprocess.Popen([sys.executable, "-m", "tegbatchd", "daemon", "--heartbeat", "0.2"],
                              env={**cli.env, **bus_env(desktop)}, cwd=cli.cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return daemon, (data_root / "commentary" / "misc").resolve()


@pytest.mark.parametrize("button, desktop_fixture", [(1, "dunst_left_click"), (2, "dunst_desktop")],
                         ids=["left click, do_action configured", "middle click, dunst defaults"])
def test_a_mouse_click_on_the_notification_opens_the_folder(request, api_cli, tmp_path, data_root, opener,  # noqa: F811
                                                            button, desktop_fixture):
    require("xdotool")
    desktop = request.getfixturevalue(desktop_fixture)
    _, record = opener
    daemon, folder = _daemon_job(api_cli, tmp_path, data_root, opener, desktop)
    try:
        wait_until(lambda: int(desktop.dunstctl("count", "displayed")) >= 1, timeout=SLOW,
                   what="the ready notification on screen")
        click_popup(desktop, button)
        wait_until(lambda: record.exists() and record.read_text().endswith("\n"), timeout=SLOW,
                   what="the open_command to run")
        assert record.read_text().splitlines() == [str(folder)]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(SLOW) == 0
    finally:
        stop_process(daemon)


def test_a_left_click_with_dunst_defaults_only_dismisses(api_cli, tmp_path, data_root, opener,  # noqa: F811
                                                         dunst_desktop):  # noqa: F811
    """What the README says about dunst: its default left click closes the notification and opens nothing."""
    require("xdotool")
    _, record = opener
    daemon, folder = _daemon_job(api_cli, tmp_path, data_root, opener, dunst_desktop)
    try:
        wait_until(lambda: int(dunst_desktop.dunstctl("count", "displayed")) >= 1, timeout=SLOW,
                   what="the ready notification on screen")
        click_popup(dunst_desktop, 1)
        wait_until(lambda: int(dunst_desktop.dunstctl("count", "displayed")) == 0, what="the popup to close")
        time.sleep(1.0)  # what a click would have started has had its moment
        assert not record.exists()
        assert ready_body(closed_history(dunst_desktop)[0]["body"], folder) == f"Written under {folder}"
    finally:
        stop_process(daemon)
