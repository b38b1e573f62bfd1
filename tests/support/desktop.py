"""Real desktop parts for tests, always torn down.

- `session_bus`: a private `dbus-daemon --config-file` without <servicedir> (nothing is auto-activated),
  exported as DBUS_SESSION_BUS_ADDRESS (DISPLAY unset).
- `dunst_desktop`: Xvfb on a free display (-displayfd) plus a real dunst on that bus.
- `fake_notification_server`: a dbus-fast ServiceInterface owning org.freedesktop.Notifications on the
  private bus; it records Notify calls and can emit ActionInvoked.
- `user_manager`: a real `systemd --user` in a private mount namespace (unshare), driven with nsenter.

Missing tools skip a test locally; with CI set they fail it, naming the apt package to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusDict, DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method, dbus_signal

APT_PACKAGE = {
    "dbus-daemon": "dbus-daemon", "dbus-send": "dbus-bin", "Xvfb": "xvfb", "dunst": "dunst",
    "dunstctl": "dunst", "systemctl": "systemd", "systemd-analyze": "systemd", "unshare": "util-linux",
    "nsenter": "util-linux",
}
SYSTEMD_BINARY = "/lib/systemd/systemd"
BUS_NAME = "org.freedesktop.Notifications"
BUS_PATH = "/org/freedesktop/Notifications"
STARTUP_TIMEOUT = 20.0
# What test runs lock to take turns with a user manager: machine-wide, already there, nothing left behind.
MANAGER_LOCK = Path(SYSTEMD_BINARY)
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require(*tools: str) -> None:
    """Skip (locally) or fail (CI set) unless every tool is installed."""
    missing = [t for t in tools if not (shutil.which(t) or (t.startswith("/") and os.access(t, os.X_OK)))]
    if not missing:
        return
    packages = sorted({APT_PACKAGE.get(t, "systemd" if t == SYSTEMD_BINARY else t) for t in missing})
    message = f"missing {', '.join(missing)}: apt-get install {' '.join(packages)}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_until(check, timeout: float = STARTUP_TIMEOUT, what: str = "condition", interval: float = 0.05):
    """Poll check() until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


# --- a private session bus ------------------------------------------------------------------------------
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def accepts(path: Path) -> bool:
    """True once a unix socket is listening (the file exists a moment before it listens)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class PrivateBus:
    """A dbus-daemon on a fixed socket path, so it can be killed and restarted at the same address."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.socket = folder / "bus"
        self.config = folder / "bus.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.socket))
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["dbus-daemon", "--nofork", "--config-file", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dbus-daemon exited with {self.proc.returncode}")
            return self.socket.is_socket() and accepts(self.socket)

        wait_until(up, what="the private dbus-daemon")

    def kill(self) -> None:
        """Kill the daemon at once (as a crashed session would)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        stop_process(self.proc)
        self.socket.unlink(missing_ok=True)

    def has_owner(self, name: str = BUS_NAME) -> bool:
        out = subprocess.run(
            ["dbus-send", f"--bus={self.address}", "--print-reply", "--dest=org.freedesktop.DBus", "/",
             "org.freedesktop.DBus.NameHasOwner", f"string:{name}"], capture_output=True, text=True)
        return "boolean true" in out.stdout


@pytest.fixture
def session_bus(monkeypatch) -> Iterator[PrivateBus]:
    """A private session bus exported in the environment (DISPLAY removed)."""
    require("dbus-daemon", "dbus-send")
    folder = Path(tempfile.mkdtemp(prefix="tb-bus-"))  # short: unix socket paths are limited to 108 bytes
    bus = PrivateBus(folder)
    bus.start()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    monkeypatch.delenv("DISPLAY", raising=False)
    try:
        yield bus
    finally:
        bus.stop()
        shutil.rmtree(folder, ignore_errors=True)


# --- Xvfb + dunst ---------------------------------------------------------------------------------------
@dataclass
class Desktop:
    bus: PrivateBus
    display: str
    env: dict

    def dunstctl(self, *args: str) -> str:
        return subprocess.run(["dunstctl", *args], env=self.env, capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def history(self) -> list[dict]:
        """Closed notifications as {appname, summary, body} (`dunstctl close-all` first)."""
        data = json.loads(self.dunstctl("history"))["data"]
        entries = data[0] if data else []
        return [{k: e[k]["data"] for k in ("appname", "summary", "body") if k in e} for e in entries]


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten",
                             "tcp"], pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    received = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:  # Xvfb writes the number and the newline separately: closing early kills it (EPIPE)
        while not received.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_end, 32) if ready else b""
            if not chunk:
                break
            received += chunk
    finally:
        os.close(read_end)
    number = received.decode().strip() if received.endswith(b"\n") else ""
    if not number or proc.poll() is not None:
        stop_process(proc)
        raise RuntimeError("Xvfb did not report a display")
    return proc, f":{number}"


# Notifications stay on screen until clicked or closed: a click test on a slow machine still finds them.
DUNSTRC = """[global]
    history_length = 50
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""


@pytest.fixture
def dunst_desktop(session_bus, tmp_path, monkeypatch) -> Iterator[Desktop]:
    """Xvfb on a free display and a real dunst owning org.freedesktop.Notifications on the private bus."""
    require("Xvfb", "dunst", "dunstctl")
    yield from running_dunst(session_bus, tmp_path, monkeypatch, DUNSTRC)


def running_dunst(session_bus, tmp_path: Path, monkeypatch, dunstrc: str) -> Iterator[Desktop]:
    """Xvfb and a real dunst with the given dunstrc on the private bus, for a fixture to yield from."""
    xvfb, display = _start_xvfb()
    env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    conf = tmp_path / "dunstrc"
    conf.write_text(dunstrc)
    dunst = None
    try:
        dunst = subprocess.Popen(["dunst", "-config", str(conf)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        wait_until(lambda: dunst.poll() is None and session_bus.has_owner(), what="dunst on the bus")
        monkeypatch.setenv("DISPLAY", display)
        yield Desktop(session_bus, display, env)
    finally:
        stop_process(dunst)
        stop_process(xvfb)


# --- a fake notification server on the private bus ------------------------------------------------------
StrList = Annotated[list[str], DBusSignature("as")]
ServerInfo = Annotated[list[str], DBusSignature("ssss")]


class FakeNotifications(ServiceInterface):
    """org.freedesktop.Notifications that records what it is asked to show (or never answers: hang)."""

    def __init__(self, hang: bool = False):
        super().__init__(BUS_NAME)
        self.calls: list[dict] = []
        self.hang = hang
        self._next_id = 0

    @dbus_method()
    async def Notify(self, app_name: DBusStr, replaces_id: DBusUInt32, app_icon: DBusStr,
                     summary: DBusStr, body: DBusStr, actions: StrList, hints: DBusDict,
                     expire_timeout: DBusInt32) -> DBusUInt32:
        if self.hang:
            await asyncio.sleep(3600)
        self._next_id += 1
        self.calls.append({"id": self._next_id, "app_name": app_name, "summary": summary, "body": body,
                           "actions": list(actions), "hints": {k: v.value for k, v in hints.items()},
                           "expire_timeout": expire_timeout})
        return self._next_id

    @dbus_method()
    def GetCapabilities(self) -> StrList:
        return ["actions", "body"]

    @dbus_method()
    def GetServerInformation(self) -> ServerInfo:
        return ["tegbatchd-fake", "tegbatchd tests", "1.0", "1.2"]

    @dbus_method()
    def CloseNotification(self, nid: DBusUInt32):  # no "-> None": dbus-fast reads it as a signature
        self.NotificationClosed(nid, 3)

    @dbus_signal()
    def ActionInvoked(self, nid, key) -> Annotated[list, DBusSignature("us")]:
        return [nid, key]

    @dbus_signal()
    def NotificationClosed(self, nid, reason) -> Annotated[list, DBusSignature("uu")]:
        return [nid, reason]


@dataclass
class FakeServer:
    address: str
    hang: bool = False
    interface: FakeNotifications | None = None
    bus: MessageBus | None = None
    calls: list = field(default_factory=list)

    async def start(self) -> FakeServer:
        self.interface = FakeNotifications(hang=self.hang)
        self.calls = self.interface.calls
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.export(BUS_PATH, self.interface)
        await self.bus.request_name(BUS_NAME)
        return self

    async def stop(self) -> None:
        """Leave the bus: the name has no owner any more."""
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.wait_for_disconnect(), 2)
            self.bus = None

    def invoke(self, nid: int, action_key: str) -> None:
        """Emit ActionInvoked, as a click on the body ("default") or on a button would."""
        self.interface.ActionInvoked(nid, action_key)


@contextlib.asynccontextmanager
async def fake_notification_server(address: str, *, hang: bool = False) -> AsyncIterator[FakeServer]:
    """Run a FakeServer on the current event loop for the duration of the block."""
    server = await FakeServer(address, hang=hang).start()
    try:
        yield server
    finally:
        await server.stop()


# --- a real systemd --user manager in a private mount namespace ----------------------------------------
MANAGER_SCRIPT = """#!/bin/sh
set -e
mount -t tmpfs none /run/systemd
mkdir -p /run/systemd/system
exec {systemd} --user
"""


class UserManager:
    """`systemd --user` with its own HOME and XDG_RUNTIME_DIR; commands run in its namespace via nsenter."""

    def __init__(self, home: Path, runtime: Path):
        self.home = home
        self.runtime = runtime
        self.proc: subprocess.Popen | None = None
        self.env = {"PATH": PLAIN_PATH, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8"}

    def start(self) -> None:
        script = self.runtime.parent / "start-manager.sh"
        script.write_text(MANAGER_SCRIPT.format(systemd=SYSTEMD_BINARY))
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "/bin/sh", str(script)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

        def running():
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd --user exited with {self.proc.returncode}")
            state = self.systemctl("is-system-running", check=False).stdout.strip()
            return state in ("running", "degraded")

        wait_until(running, what="systemd --user", interval=0.1)

    def run(self, argv: list[str], env: dict | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside the manager's mount namespace (where systemctl --user reaches it)."""
        done = subprocess.run(["nsenter", "--mount", "--target", str(self.proc.pid), *argv],
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["systemctl", "--user", *args], check=check, timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # a user manager stops its units and exits
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def user_manager() -> Iterator[UserManager]:
    """A running systemd --user manager (root only: it mounts a tmpfs on /run/systemd in its namespace)."""
    require("unshare", "nsenter", "systemctl", SYSTEMD_BINARY)
    if os.geteuid() != 0:
        message = "a private systemd --user manager needs root (unshare --mount)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="tb-sd-"))  # short: the manager's sockets live in XDG_RUNTIME_DIR
    home, runtime = base / "home", base / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    manager = UserManager(home, runtime)
    # Managers started from the same cgroup create the same app.slice/<unit> cgroups: one stopping a
    # unit kills another's. Test runs in parallel therefore take turns.
    with open(MANAGER_LOCK, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            manager.start()
            yield manager
        finally:
            manager.stop()
            shutil.rmtree(base, ignore_errors=True)
