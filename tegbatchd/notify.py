"""Desktop notifications: a small Notifier interface, its backends, and the choice between them.

`desktop_notifier` is imported lazily (inside functions) so that importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

APP_NAME = "tegbatchd"
SEND_TIMEOUT = 5.0
OPEN_BUTTON = "Open folder"
URGENCIES = ("low", "normal", "critical")


@dataclass(frozen=True)
class Notice:
    """One event worth a notification. `key` identifies the event (delivered at most once)."""

    key: str
    title: str
    body: str
    open_path: str | None
    urgency: str = "normal"


class Notifier(Protocol):
    async def send(self, notice: Notice) -> bool:
        """Show the notice; return True only when delivery is confirmed. Never raise."""
        ...


# --- opening a folder ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Opener:
    """Opens a folder with a command (xdg-open, open, or the configured one) without blocking."""

    command: str

    def open(self, path: str) -> bool:
        """Start the command with the folder as its only argument; return False (logged) if impossible."""
        exe = shutil.which(self.command)
        if exe is None:
            log.warning("cannot open %s: the command %r was not found (notifications.open_command)", path,
                        self.command)
            return False
        if not Path(path).exists():
            log.warning("cannot open %s: it no longer exists", path)
            return False
        try:
            proc = subprocess.Popen([exe, path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            log.warning("cannot open %s with %s: %s", path, exe, exc)
            return False
        threading.Thread(target=proc.wait, name="tegbatchd-opener", daemon=True).start()  # reap it
        return True


def default_open_command(system: str | None = None) -> str:
    return "open" if (system or sys.platform) == "darwin" else "xdg-open"


# --- backends -------------------------------------------------------------------------------------------
class LogNotice:
    """No notification service: the notice becomes a log line. Always succeeds.

    Logged as a WARNING: the one-shot commands (`poll --once`, the timer's service) show only warnings,
    and this line is the only place the person learns that the job is ready.
    """

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    async def send(self, notice: Notice) -> bool:
        where = f" [{notice.open_path}]" if notice.open_path else ""
        log.warning("notice: %s — %s%s", notice.title, notice.body, where)
        return True

    async def aclose(self) -> None:
        pass


def applescript_string(text: str) -> str:
    """Quote text as an AppleScript string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OsascriptNotice:
    """macOS outside an app bundle: `osascript -e 'display notification ...'` (no click callbacks)."""

    def __init__(self, executable: str = "osascript", timeout: float = SEND_TIMEOUT) -> None:
        self.executable = executable
        self.timeout = timeout

    async def send(self, notice: Notice) -> bool:
        script = f"display notification {applescript_string(notice.body)} with title {applescript_string(notice.title)}"
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable, "-e", script, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
        except OSError as exc:
            log.warning("notice %s not delivered: cannot run %s: %s", notice.key, self.executable, exc)
            return False
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("notice %s not delivered: osascript did not finish in %.0f s", notice.key, self.timeout)
            return False
        if proc.returncode != 0:
            log.warning("notice %s not delivered: osascript exited %s: %s", notice.key, proc.returncode,
                        err.decode(errors="replace").strip())
            return False
        return True

    async def aclose(self) -> None:
        pass


class _FailureCatcher(logging.Filter):
    """Swallows desktop-notifier's "Notification failed" warning (with traceback) and keeps its reason."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Notification failed"):
            exc = record.exc_info[1] if record.exc_info else None
            self.reason = f"{type(exc).__name__}: {exc}" if exc else "unknown error"
            return False
        return True


class DesktopNotice:
    """desktop-notifier's async DesktopNotifier on the caller's event loop, with click-to-open.

    Delivery counts only when `on_dispatched` fires within `timeout`. When it does not, the next send
    builds a fresh DesktopNotifier: the old one would keep its dead D-Bus connection forever.
    """

    def __init__(self, opener: Opener, *, timeout: float = SEND_TIMEOUT, app_name: str = APP_NAME) -> None:
        self.opener = opener
        self.timeout = timeout
        self.app_name = app_name
        self._notifier: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._stale = False

    async def send(self, notice: Notice) -> bool:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self._notifier is None or self._stale or self._loop is not loop:
                await self._recreate(loop)
            return await self._send(notice)

    async def _send(self, notice: Notice) -> bool:
        from desktop_notifier import Button, Urgency

        dispatched = asyncio.Event()
        kwargs: dict[str, Any] = {}
        if notice.open_path:
            path = notice.open_path
            kwargs["on_clicked"] = lambda: self.opener.open(path)
            kwargs["buttons"] = [Button(title=OPEN_BUTTON, on_pressed=lambda: self.opener.open(path))]
        urgency = Urgency(notice.urgency) if notice.urgency in URGENCIES else Urgency.Normal
        catcher = _FailureCatcher()
        source = logging.getLogger("desktop_notifier.backends.base")
        source.addFilter(catcher)
        try:
            await asyncio.wait_for(
                self._notifier.send(notice.title, notice.body, urgency=urgency, on_dispatched=dispatched.set,
                                    **kwargs),
                self.timeout)
            reason = catcher.reason or "not dispatched"
        except TimeoutError:
            reason = f"no answer from the notification service within {self.timeout:g} s"
        except Exception as exc:  # a notification must never crash the daemon
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            source.removeFilter(catcher)
        if dispatched.is_set():
            return True
        self._stale = True
        log.warning("notice %s not delivered (%s); the next send uses a new connection", notice.key, reason)
        return False

    async def _recreate(self, loop: asyncio.AbstractEventLoop) -> None:
        from desktop_notifier import DesktopNotifier

        await self.aclose()
        self._notifier = DesktopNotifier(app_name=self.app_name, app_icon=None)
        self._loop = loop
        self._stale = False

    async def aclose(self) -> None:
        """Drop the notifier and disconnect its D-Bus connection, if any (callbacks stop working)."""
        notifier, self._notifier = self._notifier, None
        bus = getattr(getattr(notifier, "_backend", None), "bus", None)  # only the D-Bus backend has one
        if bus is None or self._loop is not asyncio.get_running_loop():
            return
        try:
            bus.disconnect()
            await asyncio.wait_for(bus.wait_for_disconnect(), 1.0)
        except Exception:  # the connection may be dead already
            pass


# --- choosing a backend ---------------------------------------------------------------------------------
def _section(config: Any) -> dict:
    try:
        return dict(config["notifications"] or {})
    except (KeyError, TypeError):
        return {}


def _desktop_notifier_is_real() -> bool:
    from desktop_notifier.main import get_backend_class

    return get_backend_class().__name__ != "DummyNotificationCenter"


def make_notifier(config: Any, *, system: str | None = None, environ: dict | None = None,
                  timeout: float = SEND_TIMEOUT) -> Notifier:
    """Given the effective config (or a dict with a "notifications" section), return the notifier to use.

    `system` (a sys.platform value) and `environ` default to this process's. On Linux, when only
    $XDG_RUNTIME_DIR/bus exists, DBUS_SESSION_BUS_ADDRESS is set to it in `environ`: desktop-notifier
    looks at the variable only.
    """
    system = system or sys.platform
    env = os.environ if environ is None else environ
    section = _section(config)
    if section.get("enabled") is False:
        return LogNotice("notifications are disabled in the config")
    opener = Opener(section.get("open_command") or default_open_command(system))
    if system == "darwin":
        if _desktop_notifier_is_real():
            return DesktopNotice(opener, timeout=timeout)
        if shutil.which("osascript"):
            return OsascriptNotice(timeout=timeout)
        reason = "no notification center (not an app bundle, and no osascript)"
    elif system.startswith("linux") or "bsd" in system:
        if not env.get("DBUS_SESSION_BUS_ADDRESS"):
            runtime_bus = Path(env.get("XDG_RUNTIME_DIR") or "/nonexistent") / "bus"
            if runtime_bus.is_socket():
                env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime_bus}"  # desktop-notifier has no such fallback
                log.info("using the session bus at %s", runtime_bus)
            elif not env.get("DISPLAY"):
                reason = "no session bus (neither DBUS_SESSION_BUS_ADDRESS nor DISPLAY is set)"
                log.warning("desktop notifications off: %s; notices go to the log", reason)
                return LogNotice(reason)
        return DesktopNotice(opener, timeout=timeout)
    elif _desktop_notifier_is_real():
        return DesktopNotice(opener, timeout=timeout)
    else:
        reason = f"no notification backend for platform {system}"
    log.warning("desktop notifications off: %s; notices go to the log", reason)
    return LogNotice(reason)


async def close_notifier(notifier: Notifier) -> None:
    """Release what a notifier holds (its D-Bus connection) before its event loop ends."""
    close = getattr(notifier, "aclose", None)
    if close is not None:
        await close()


def send_sync(notifier: Notifier, notice: Notice, timeout: float = SEND_TIMEOUT) -> bool:
    """Send one notice from synchronous code (CLI): run a short event loop until it is dispatched.

    Must not be called from inside a running event loop. Click callbacks do not outlive the call.
    """

    async def once() -> bool:
        try:
            return await asyncio.wait_for(notifier.send(notice), timeout)
        except TimeoutError:
            log.warning("notice %s not delivered: no answer within %g s", notice.key, timeout)
            return False
        finally:
            await close_notifier(notifier)

    return asyncio.run(once())


# --- what `doctor` says of notifications -----------------------------------------------------------------
def notification_server(address: str, timeout: float = 3.0) -> tuple[str | None, str | None]:
    """(name and version of the notification server on the session bus at address, None), or (None, why
    there is none). Asks GetServerInformation, as a send would reach it (a server D-Bus starts counts)."""

    async def ask() -> tuple[str | None, str | None]:
        from dbus_fast import Message, MessageType
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=address).connect()
        try:
            reply = await bus.call(Message(destination="org.freedesktop.Notifications",
                                           path="/org/freedesktop/Notifications",
                                           interface="org.freedesktop.Notifications", member="GetServerInformation"))
        finally:
            bus.disconnect()
        if reply is None or reply.message_type == MessageType.ERROR:
            return None, f"no notification server answers on the session bus ({getattr(reply, 'error_name', '')})"
        name, _vendor, version, _spec = reply.body
        return f"{name} {version}", None

    async def bounded() -> tuple[str | None, str | None]:
        return await asyncio.wait_for(ask(), timeout)

    try:
        return asyncio.run(bounded())
    except Exception as exc:  # noqa: BLE001 - no bus, a dead socket, no dbus-fast: each is an answer
        return None, f"the session bus {address} does not answer ({type(exc).__name__}: {exc})"[:200]


def backend_description(config: Any, *, system: str | None = None, environ: dict | None = None) -> tuple[str, str]:
    """(kind, detail) of what a notification from this process would become: "desktop" (a server that
    answers, named), "log fallback" (and why), "no server" (notices wait until one answers) or "disabled".
    Logs nothing and changes no environment."""
    system = system or sys.platform
    env = dict(os.environ if environ is None else environ)
    if _section(config).get("enabled") is False:
        return "disabled", "notifications are disabled in the config"
    was, log.disabled = log.disabled, True
    try:
        notifier = make_notifier(config, system=system, environ=env)
    finally:
        log.disabled = was
    if isinstance(notifier, LogNotice):
        return "log fallback", notifier.reason
    if isinstance(notifier, OsascriptNotice):
        return "desktop", "osascript (outside an app bundle: shown, but a click opens nothing)"
    if system.startswith("linux") or "bsd" in system:
        address = env.get("DBUS_SESSION_BUS_ADDRESS") or ""
        if not address:
            return "no server", "no session bus address (DISPLAY only): notices wait until a bus answers"
        server, why = notification_server(address)
        if server is None:
            return "no server", f"{why}: notices wait (pending) until one answers"
        return "desktop", f"{server} on the session bus ({address})"
    return "desktop", "the system's notification center"
