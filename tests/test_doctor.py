"""`tegbatchd doctor`: one line per check with ok / warn / fail and its fix, exit 0 when nothing fails; the
endpoint, the clock (the emulator's Date header), the key and the models against the real emulator; the
state database's integrity; what is pending; a newer release from a local package index (never required,
never hanging); notifications with a real dunst on a private bus."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tegbatchd import __version__
from tests.conftest import TEST_KEY, write_requests
from tests.support.desktop import dunst_desktop, session_bus  # noqa: F401

NAMES = ["service", "notifications", "key", "endpoint", "clock", "database", "pending", "models", "version"]


@pytest.fixture
def index():
    """A local package index page (PyPI's JSON shape) saying which version is the newest."""
    state = {"version": "99.0.0"}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if state["version"] is None:  # not published
                self.send_error(404)
                return
            body = json.dumps({"info": {"name": "tegbatchd", "version": state["version"]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi/tegbatchd/json", state
    server.shutdown()
    server.server_close()


@pytest.fixture
def setup(api_cli, tmp_path, _isolated_home, index):
    """The emulator, a key the service can read (api_key_file), no service manager, no session bus."""
    cli, emu = api_cli("--process-seconds", "100000")
    key_file = tmp_path / "key"
    key_file.write_text(TEST_KEY)
    key_file.chmod(0o600)
    config = _isolated_home / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"api_key_file: {key_file}\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    home = tmp_path / "user"
    home.mkdir()
    bound = cli.bound(TEGBATCHD_VERSION_URL=index[0], HOME=str(home), XDG_RUNTIME_DIR=str(runtime),
                      DBUS_SESSION_BUS_ADDRESS="", DISPLAY="", WAYLAND_DISPLAY="")
    return bound, emu, config


def checks(result) -> dict[str, dict]:
    found = {c["name"]: c for c in result.json()["checks"]}
    assert list(found) == NAMES
    return found


def test_a_sound_setup_passes_with_each_check_on_one_line(setup, tmp_path):
    cli, emu, _ = setup
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", "misc/{custom_id}.md",
        check=True)
    text = cli("doctor")
    assert text.code == 0, text.out + text.err
    lines = text.out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == NAMES and lines[-1].endswith("0 fail")
    assert all(line.split()[0] in ("ok", "warn") for line in lines[:-1])

    found = checks(cli("doctor", "--json", check=True))
    assert found["key"]["status"] == "ok" and "api_key_file" in found["key"]["detail"]
    assert found["endpoint"] == {"name": "endpoint", "status": "ok", "fix": None,
                                 "detail": f"{emu.url} (ANTHROPIC_BASE_URL) answers and accepts the key"}
    assert found["clock"]["status"] == "ok" and "within a minute" in found["clock"]["detail"]
    assert found["database"]["status"] == "ok" and "integrity ok" in found["database"]["detail"]
    pending = found["pending"]
    assert pending["status"] == "ok" and "1 job(s) active, 1 batch(es) not retrieved, next poll" in pending["detail"]
    local = checks(cli("doctor", "--json", TZ="America/New_York", check=True))["pending"]["detail"]
    utc = checks(cli("doctor", "--json", "--utc", TZ="America/New_York", check=True))["pending"]["detail"]
    assert re.search(r"next poll \d{4}-\d\d-\d\d \d\d:\d\d E[SD]T$", local), local
    assert re.search(r"next poll \d{4}-\d\d-\d\d \d\d:\d\d UTC$", utc), utc
    assert found["models"]["status"] == "ok" and "claude-" in found["models"]["detail"]
    assert found["version"] == {"name": "version", "status": "warn", "detail": f"tegbatchd {__version__}; 99.0.0 is out",
                                "fix": "pip install --upgrade tegbatchd"}
    assert found["service"]["status"] == "warn" and "tegbatchd service install" in found["service"]["fix"]
    notifications = found["notifications"]
    assert notifications["status"] == "warn" and notifications["detail"].startswith("log fallback: no session bus")


def test_a_clock_an_hour_off_fails(setup):
    cli, emu, _ = setup
    emu.advance(3600)  # the API's Date header is an hour ahead of this machine
    result = cli("doctor", "--json")
    assert result.code == 1
    clock = checks(result)["clock"]
    assert clock["status"] == "fail" and re.fullmatch(r"this machine is 3(59\d|60\d) s behind the API's clock",
                                                      clock["detail"]), clock
    assert "NTP" in clock["fix"]


def test_a_rejected_key_and_a_retired_model_fail(api_cli, setup, tmp_path, _isolated_home):
    cli, _, config = setup
    config.write_text(config.read_text() + "stages:\n  narrative:\n    model: claude-sonnet-4-5-20250929\n")
    found = checks(cli("doctor", "--json"))
    assert found["models"]["status"] == "fail"
    assert "'claude-sonnet-4-5-20250929' (stages.narrative in your config) is retired" in found["models"]["detail"]
    other, emu = api_cli("--api-key", "sk-ant-someone-else")
    result = other("doctor", "--json", TEGBATCHD_VERSION_URL="off")
    assert result.code == 1
    endpoint = {c["name"]: c for c in result.json()["checks"]}["endpoint"]
    assert endpoint["status"] == "fail" and "rejected the API key (401)" in endpoint["detail"]


def test_a_damaged_database_fails_with_its_fix(setup, tmp_path, _isolated_home):
    cli, _, _ = setup
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 300)), "--output", "misc/{custom_id}.md",
        check=True)
    db = _isolated_home / "state" / "state.db"
    cli("poll", "--once", check=True)  # a checkpoint: the rows are in the main file
    data = bytearray(db.read_bytes())
    for start in range(4096 * 3, len(data) - 4096, 4096 * 2):  # every other page past the schema, garbled
        data[start + 8:start + 200] = b"\xff" * 192
    db.write_bytes(bytes(data))
    for name in ("state.db-wal", "state.db-shm"):
        (db.parent / name).unlink(missing_ok=True)
    result = cli("doctor", "--json")
    assert result.code == 1, result.out
    database = checks(result)["database"]
    assert database["status"] == "fail" and str(db) in database["detail"]
    assert "move it aside" in database["fix"]


def test_a_blocked_job_is_named_with_its_next_step(setup, tmp_path, _isolated_home):
    cli, emu, _ = setup
    job = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", "misc/{custom_id}.md",
              "--json", check=True).json()["job_id"]
    from tegbatchd.context import Context
    from tegbatchd.engine.states import JobState

    ctx = Context()
    try:
        ctx.store.move_job(job, JobState.BLOCKED, reason="the disk is full", kind="error")
    finally:
        ctx.close()
    pending = checks(cli("doctor", "--json"))["pending"]
    assert pending["status"] == "warn" and f"1 blocked: {job}" in pending["detail"]
    assert "the disk is full" in pending["detail"] and pending["fix"] == f"fix it, then tegbatchd retry {job}"


def test_the_release_check_says_whether_a_newer_one_is_out(setup, index):
    cli, _, _ = setup
    _, state = index
    state["version"] = __version__
    assert checks(cli("doctor", "--json"))["version"]["detail"] == f"tegbatchd {__version__} is the newest"
    state["version"] = None
    version = checks(cli("doctor", "--json"))["version"]
    assert version["status"] == "ok" and version["detail"].endswith("(the package index did not say: tegbatchd is "
                                                                    "not published there)")


def test_an_index_that_never_answers_does_not_hold_doctor(setup):
    cli, _, _ = setup
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/pypi/tegbatchd/json"
        result = cli("doctor", "--json", TEGBATCHD_VERSION_URL=url)
    finally:
        silent.close()
    assert result.code == 0, result.out
    version = checks(result)["version"]
    assert version["status"] == "ok" and "the package index did not say" in version["detail"]
    off = checks(cli("doctor", "--json", TEGBATCHD_VERSION_URL="off"))["version"]
    assert off["status"] == "ok" and "check is off" in off["detail"]


def test_notifications_name_the_real_server_on_the_bus(setup, dunst_desktop):  # noqa: F811
    cli, _, _ = setup
    found = checks(cli("doctor", "--json", DBUS_SESSION_BUS_ADDRESS=dunst_desktop.bus.address,
                       DISPLAY=dunst_desktop.display))
    assert found["notifications"]["status"] == "ok"
    assert found["notifications"]["detail"].startswith("dunst ") and "on the session bus" in found["notifications"]["detail"]


def test_a_bus_without_a_notification_server_is_a_warning(setup, session_bus):  # noqa: F811
    cli, _, _ = setup
    found = checks(cli("doctor", "--json", DBUS_SESSION_BUS_ADDRESS=session_bus.address, DISPLAY=":99"))
    assert found["notifications"]["status"] == "warn"
    assert "no notification server answers on the session bus" in found["notifications"]["detail"]


def test_doctor_says_so_when_there_is_no_key_at_all(cli, emulator, tmp_path):
    with emulator() as emu:
        result = cli("doctor", "--json", ANTHROPIC_BASE_URL=emu.url, TEGBATCHD_VERSION_URL="off",
                     HOME=str(tmp_path))
    found = checks(result)
    assert found["key"]["status"] == "warn" and "no API key the service can read" in found["key"]["detail"]
    assert found["endpoint"]["status"] == "warn" and "no key here to try" in found["endpoint"]["detail"]
    assert found["models"]["status"] == "warn"
    assert result.code == 0
    assert Path(tmp_path).exists()


def test_a_relative_key_file_is_a_warning(setup, tmp_path):
    cli, _, config = setup
    (tmp_path / "key").rename(tmp_path / "rel-key")
    config.write_text("api_key_file: rel-key\n")  # found from here (tmp_path), not from the service's folder
    key = checks(cli("doctor", "--json"))["key"]
    assert key["status"] == "warn" and "'rel-key' is a relative path" in key["detail"]
    assert key["fix"] == "give api_key_file as an absolute path"


def _installed(home: Path, tmp_path: Path, platform: str, variant: str, unit: str) -> None:
    """What `service install` leaves: its manifest, naming a unit file that exists."""
    from tegbatchd.actions.service import MANIFEST

    unit_file = tmp_path / "unit-file"
    unit_file.write_text("unit\n")
    (home / "state").mkdir(parents=True, exist_ok=True)
    (home / "state" / MANIFEST).write_text(json.dumps({"platform": platform, "variant": variant, "unit": unit,
                                                       "files": [str(unit_file)]}))


def _fake_launchctl(tmp_path: Path, state: str) -> str:
    """A `launchctl` that answers `print gui/UID/LABEL` as macOS does for an agent in that state."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "launchctl"
    tool.write_text(f"#!/bin/sh\necho 'gui/501/io.tegbatchd = {{'\necho '\tstate = {state}'\necho '}}'\n")
    tool.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


@pytest.mark.parametrize("variant, state, status", [
    ("timer", "not running", "ok"),       # a StartInterval agent between two runs
    ("timer", "running", "ok"),
    ("daemon", "running", "ok"),
    ("daemon", "not running", "fail"),    # the resident daemon should always run
])
def test_a_launchd_agent_is_judged_by_what_its_variant_should_be_doing(setup, tmp_path, _isolated_home,
                                                                       variant, state, status):
    cli, _, _ = setup
    _installed(_isolated_home, tmp_path, "macos", variant, "io.tegbatchd.poll")
    result = cli("doctor", "--json", PATH=_fake_launchctl(tmp_path, state))
    service = checks(result)["service"]
    assert service["status"] == status, service
    assert result.code == (1 if status == "fail" else 0)
    if variant == "timer" and state == "not running":
        assert service["detail"] == "the timer (io.tegbatchd.poll) is loaded and waits for its next run"


def test_an_installed_service_that_cannot_read_a_key_fails_and_the_database_size_is_shown(setup, tmp_path,
                                                                                         _isolated_home):
    cli, _, config = setup
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", "misc/{custom_id}.md",
        check=True)
    database = checks(cli("doctor", "--json", check=True))["database"]
    size = (_isolated_home / "state" / "state.db").stat().st_size
    assert database["detail"].endswith(f": integrity ok, {size / 1e6:.1f} MB")
    config.write_text("")   # the key only in this shell, with a service installed: it cannot authenticate
    _installed(_isolated_home, tmp_path, "macos", "timer", "io.tegbatchd.poll")
    result = cli("doctor", "--json", ANTHROPIC_API_KEY=TEST_KEY, PATH=_fake_launchctl(tmp_path, "not running"))
    key = checks(result)["key"]
    assert result.code == 1 and key["status"] == "fail"
    assert key["detail"] == "ANTHROPIC_API_KEY is set only in this shell: the service cannot see it"
    assert key["fix"] == "tegbatchd service install --store-key (writes it to api_key_file, 0600)"
