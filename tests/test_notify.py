"""Notifications against real parts: dunst under Xvfb on a private bus, a fake server on a private bus,
no bus at all; and deliver_pending with a small in-memory store."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tegbatchd.actions.deliver import deliver_pending
from tegbatchd.notify import (
    OPEN_BUTTON,
    DesktopNotice,
    LogNotice,
    Notice,
    OsascriptNotice,
    make_notifier,
    send_sync,
)
from tests.support.desktop import dunst_desktop, fake_notification_server, session_bus  # noqa: F401

FAST = 2.0  # seconds a send may take before it counts as undelivered, in these tests


@pytest.fixture
def opener(tmp_path):
    """An open_command that records the folder it is asked to open; returns (script, record file)."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "record-open"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n')
    script.chmod(0o755)
    return script, record


@pytest.fixture
def reports(tmp_path) -> Path:
    folder = tmp_path / "reports" / "TEG 17"
    folder.mkdir(parents=True)
    return folder


def config(open_command=None, enabled=True) -> dict:
    return {"notifications": {"enabled": enabled, "stage_submitted": False, "open_command": open_command}}


def unique(title: str) -> str:
    return f"{title} {uuid.uuid4().hex[:8]}"


async def opened(record: Path, timeout: float = 5.0) -> list[str]:
    """The folders the recording opener was called with, waiting for the first one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not record.exists() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    return record.read_text().splitlines() if record.exists() else []


def own_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- real dunst under Xvfb ------------------------------------------------------------------------------
def test_dunst_shows_the_notice_and_a_click_opens_the_folder(dunst_desktop, opener, reports):  # noqa: F811
    script, record = opener
    title = unique("Round reports ready")
    notice = Notice("job-1:done", title, "TEG 17: 4 reports written", str(reports))

    async def scenario():
        notifier = make_notifier(config(str(script)))
        assert isinstance(notifier, DesktopNotice)
        assert await notifier.send(notice) is True
        click = await asyncio.create_subprocess_exec("dunstctl", "action", "0", env=dunst_desktop.env)
        assert await click.wait() == 0
        return await opened(record)

    assert asyncio.run(scenario()) == [str(reports)]
    dunst_desktop.dunstctl("close-all")
    entry = next(e for e in dunst_desktop.history() if e["summary"] == title)
    assert entry == {"appname": "tegbatchd", "summary": title, "body": "TEG 17: 4 reports written"}


def test_send_sync_delivers_to_dunst(dunst_desktop):  # noqa: F811
    title = unique("Batch expired")
    assert send_sync(make_notifier(config()), Notice("b-1:expired", title, "2 requests expired", None)) is True
    dunst_desktop.dunstctl("close-all")
    assert any(e["summary"] == title for e in dunst_desktop.history())


# --- the fake server ------------------------------------------------------------------------------------
def test_actions_urgency_and_clicks_reach_the_opener(session_bus, opener, reports):  # noqa: F811
    script, record = opener

    async def scenario():
        async with fake_notification_server(session_bus.address) as server:
            notifier = make_notifier(config(str(script)), timeout=FAST)
            assert await notifier.send(Notice("k1", "Reports ready", "body 1", str(reports), "critical"))
            assert await notifier.send(Notice("k2", "Partly failed", "body 2", str(reports), "low"))
            assert await notifier.send(Notice("k3", "Submitted", "no folder", None, "bogus"))
            first, second, third = server.calls
            assert first["app_name"] == "tegbatchd"
            assert (first["summary"], first["body"]) == ("Reports ready", "body 1")
            assert first["actions"][:2] == ["default", ""] and first["actions"][3] == OPEN_BUTTON
            assert [c["hints"]["urgency"] for c in server.calls] == [2, 0, 1]
            assert third["actions"] == ["default", ""]  # no folder: no button
            server.invoke(first["id"], first["actions"][2])  # the "Open folder" button
            assert await opened(record) == [str(reports)]
            server.invoke(second["id"], "default")  # a click on the body
            for _ in range(50):
                if len(record.read_text().splitlines()) == 2:
                    break
                await asyncio.sleep(0.05)
            server.invoke(third["id"], "default")  # nothing to open: nothing happens
            await asyncio.sleep(0.2)
            return record.read_text().splitlines()

    assert asyncio.run(scenario()) == [str(reports), str(reports)]


def test_a_missing_folder_is_logged_not_opened(session_bus, opener, tmp_path, caplog):  # noqa: F811
    script, record = opener
    gone = tmp_path / "gone"

    async def scenario():
        async with fake_notification_server(session_bus.address) as server:
            notifier = make_notifier(config(str(script)), timeout=FAST)
            assert await notifier.send(Notice("k", "t", "b", str(gone)))
            server.invoke(server.calls[0]["id"], "default")
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert not record.exists()
    assert any("no longer exists" in r.getMessage() for r in caplog.records)


def test_no_name_owner_fails_once_then_a_new_server_is_used(session_bus, caplog):  # noqa: F811
    async def scenario():
        notifier = make_notifier(config(), timeout=FAST)
        async with fake_notification_server(session_bus.address) as server:
            assert await notifier.send(Notice("a", "first", "b", None))
            assert len(server.calls) == 1
        caplog.clear()
        assert await notifier.send(Notice("b", "nobody listens", "b", None)) is False
        failures = own_warnings(caplog)
        async with fake_notification_server(session_bus.address) as server:
            assert await notifier.send(Notice("c", "back", "b", None)) is True
            return failures, [c["summary"] for c in server.calls]

    failures, summaries = asyncio.run(scenario())
    assert summaries == ["back"]
    assert len(failures) == 1 and failures[0].name == "tegbatchd.notify"
    assert "notice b not delivered" in failures[0].getMessage()


def test_bus_restart_recreates_the_notifier(session_bus, caplog):  # noqa: F811
    async def scenario():
        notifier = make_notifier(config(), timeout=FAST)
        async with fake_notification_server(session_bus.address):
            assert await notifier.send(Notice("a", "before", "b", None))
            session_bus.kill()
            await asyncio.sleep(0.1)
            caplog.clear()
            assert await notifier.send(Notice("b", "bus gone", "b", None)) is False
        failures = own_warnings(caplog)
        session_bus.start()
        async with fake_notification_server(session_bus.address) as server:
            assert await notifier.send(Notice("c", "after restart", "b", None)) is True
            return failures, [c["summary"] for c in server.calls]

    failures, summaries = asyncio.run(scenario())
    # dbus-fast leaves a failed write future in a reference cycle; finalize it here, not at a random
    # later moment (its "exception never retrieved" report can land inside an unrelated ast.parse)
    gc.collect()
    assert summaries == ["after restart"]
    assert [r.name for r in failures] == ["tegbatchd.notify"]


def test_a_server_that_never_answers_times_out(session_bus, caplog):  # noqa: F811
    async def scenario():
        async with fake_notification_server(session_bus.address, hang=True):
            notifier = make_notifier(config(), timeout=0.5)
            return await notifier.send(Notice("slow", "t", "b", None))

    assert asyncio.run(scenario()) is False
    assert "no answer from the notification service" in own_warnings(caplog)[0].getMessage()


def test_send_sync_without_a_server_returns_false(session_bus):  # noqa: F811
    assert send_sync(make_notifier(config(), timeout=FAST), Notice("x", "t", "b", None)) is False


# --- choosing a backend ---------------------------------------------------------------------------------
def test_no_bus_and_no_display_logs_instead(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tegbatchd.notify")
    notifier = make_notifier(config(), system="linux", environ={"HOME": str(tmp_path)})
    assert isinstance(notifier, LogNotice)
    assert [r.getMessage() for r in own_warnings(caplog)] == [
        "desktop notifications off: no session bus (neither DBUS_SESSION_BUS_ADDRESS nor DISPLAY is set); "
        "notices go to the log"]
    assert send_sync(notifier, Notice("k", "Reports ready", "4 written", "/tmp/r")) is True
    assert any("Reports ready — 4 written [/tmp/r]" in r.getMessage() for r in caplog.records)


def test_runtime_dir_bus_is_found_without_the_variable(session_bus, tmp_path):  # noqa: F811
    runtime = session_bus.socket.parent
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    assert isinstance(make_notifier(config(), system="linux", environ=env), DesktopNotice)
    assert env["DBUS_SESSION_BUS_ADDRESS"] == session_bus.address


def test_disabled_in_config_logs_only():
    assert isinstance(make_notifier(config(enabled=False), system="linux", environ={"DISPLAY": ":0"}),
                      LogNotice)


def test_importing_notify_does_not_import_desktop_notifier():
    code = "import sys, tegbatchd.notify; print('desktop_notifier' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_macos_without_an_app_bundle_uses_osascript(tmp_path, monkeypatch):
    record = tmp_path / "osascript-args"
    fake = tmp_path / "bin" / "osascript"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr("tegbatchd.notify._desktop_notifier_is_real", lambda: False)
    notifier = make_notifier(config(), system="darwin")
    assert isinstance(notifier, OsascriptNotice)
    notice = Notice("k", 'TEG "17" ready', "C:\\reports\\r1", None)
    assert send_sync(notifier, notice) is True
    assert record.read_text().splitlines() == [
        "-e", 'display notification "C:\\\\reports\\\\r1" with title "TEG \\"17\\" ready"']


# --- deliver_pending ------------------------------------------------------------------------------------
class FakeStore:
    def __init__(self, keys):
        self.rows = {k: {"key": k, "title": f"title {k}", "body": f"body {k}", "open_path": None,
                         "urgency": None} for k in keys}
        self.delivered: list[str] = []

    def pending_notices(self):
        return [r for k, r in self.rows.items() if k not in self.delivered]

    def mark_notice_delivered(self, key):
        self.delivered.append(key)


class Ctx:
    def __init__(self, store, lock_dir: Path):
        from types import SimpleNamespace

        self.store = store
        self.paths = SimpleNamespace(lock_dir=lock_dir)  # notices.lock


class ScriptedNotifier:
    """Answers send() from a list: True, False, or an exception to raise."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent: list[Notice] = []

    async def send(self, notice):
        self.sent.append(notice)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_deliver_marks_only_confirmed_notices(tmp_path):
    store = FakeStore(["a", "b", "c"])
    notifier = ScriptedNotifier([True, False, True])
    assert asyncio.run(deliver_pending(Ctx(store, tmp_path), notifier)) == 2
    assert store.delivered == ["a", "c"]
    assert notifier.sent[0] == Notice("a", "title a", "body a", None, "normal")
    assert asyncio.run(deliver_pending(Ctx(store, tmp_path), ScriptedNotifier([True]))) == 1
    assert store.delivered == ["a", "c", "b"]


def test_deliver_stops_when_the_service_looks_down(caplog, tmp_path):
    store = FakeStore(["a", "b", "c", "d"])
    notifier = ScriptedNotifier([False, RuntimeError("boom"), True, True])
    assert asyncio.run(deliver_pending(Ctx(store, tmp_path), notifier)) == 0
    assert [n.key for n in notifier.sent] == ["a", "b"]
    assert store.delivered == []
    assert any("notifier raised RuntimeError: boom" in r.getMessage() for r in caplog.records)


def test_deliver_through_the_fake_server(session_bus, reports, tmp_path):  # noqa: F811
    store = FakeStore(["job-1:done"])
    store.rows["job-1:done"].update(open_path=str(reports), urgency="critical")

    async def scenario():
        notifier = make_notifier(config(), timeout=FAST)
        assert await deliver_pending(Ctx(store, tmp_path), notifier) == 0  # no server yet: stays pending
        async with fake_notification_server(session_bus.address) as server:
            assert await deliver_pending(Ctx(store, tmp_path), notifier) == 1
            return server.calls

    calls = asyncio.run(scenario())
    assert store.delivered == ["job-1:done"]
    assert [(c["summary"], c["hints"]["urgency"]) for c in calls] == [("title job-1:done", 2)]
