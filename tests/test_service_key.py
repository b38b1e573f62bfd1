"""`tegbatchd service install` never leaves a service that cannot authenticate: a key only in this shell is
written to api_key_file (0600) on request (--store-key, or yes on a terminal), else install refuses (exit 5)
having written nothing; a daemon with no key says so once. Also what install leaves out of the unit and
says so (a base URL with credentials) and a PATH with each folder once."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, write_requests
from tests.support.desktop import dunst_desktop, session_bus  # noqa: F401

KEY = "sk-ant-api03-service-key-canary"


@pytest.fixture
def shell(cli, tmp_path):
    """The person's shell for `service install`: HOME in tmp_path, no systemd user manager reachable."""
    home, runtime = tmp_path / "user", tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    stub = tmp_path / "bin" / "tegbatchd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    bound = cli.bound(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME="")
    return bound, home, stub


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_key_only_in_the_shell_is_refused_and_nothing_is_installed(shell, _isolated_home):
    cli, home, stub = shell
    before_home, before_tb = files_under(home), files_under(_isolated_home)
    done = cli("service", "install", "--exec", str(stub), ANTHROPIC_API_KEY=KEY)
    assert done.code == 5, done.err
    assert "the service could not authenticate: ANTHROPIC_API_KEY is set only in this shell" in done.err
    assert "tegbatchd service install --store-key" in done.err and "keyring set tegbatchd anthropic" in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert files_under(home) == before_home and files_under(_isolated_home) == before_tb  # nothing written
    assert KEY not in done.out + done.err


def test_no_key_anywhere_is_refused(shell):
    cli, home, stub = shell
    done = cli("service", "install", "--timer", "--exec", str(stub))
    assert done.code == 5
    assert "no API key it can read (no api_key_file in the config and nothing in the OS keyring)" in done.err
    assert not (home / ".config").exists()


def test_store_key_writes_a_private_key_file_the_service_reads(shell, _isolated_home):
    cli, home, stub = shell
    cli("config", "init", check=True)
    config = _isolated_home / "config" / "config.yaml"
    out = cli("service", "install", "--store-key", "--exec", str(stub), ANTHROPIC_API_KEY=KEY, check=True).out
    key_file = _isolated_home / "config" / "anthropic-api-key"
    assert f"wrote the API key to {key_file} (0600)" in out
    assert f"The service reads the API key from api_key_file {key_file}." in out
    assert key_file.read_text() == KEY + "\n" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    text = config.read_text()
    assert f'api_key_file: "{key_file}"' in text and "# tegbatchd configuration" in text  # comments kept
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    unit = home / ".config" / "systemd" / "user" / "tegbatchd.service"
    assert unit.exists() and KEY not in unit.read_text() and KEY not in out
    shown = cli("config", "show", ANTHROPIC_API_KEY="", check=True).out
    assert f"api_key_file {key_file}" in shown and KEY not in shown
    again = cli("service", "install", "--exec", str(stub), check=True)  # the shell's key is not needed now
    assert "The service reads the API key from api_key_file" in again.out


def test_store_key_never_overwrites_a_file_that_is_there(shell, _isolated_home):
    cli, home, stub = shell
    other = _isolated_home / "config" / "anthropic-api-key"
    other.parent.mkdir(parents=True)
    other.write_text("something else\n")
    done = cli("service", "install", "--store-key", "--exec", str(stub), ANTHROPIC_API_KEY=KEY)
    assert done.code == 5 and "exists already and is not overwritten" in done.err
    assert other.read_text() == "something else\n" and not (home / ".config").exists()


def _on_a_terminal(env: dict, cwd: Path, argv: list[str], answer: str) -> tuple[int, str]:
    """Run `python -m tegbatchd ARGV` on a pseudo-terminal, answer its question; return (code, screen)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tegbatchd", *argv], stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    screen, answered, deadline = b"", False, time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, screen.decode(errors="replace")
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            screen += chunk
        if not answered and b"[y/N]" in screen:
            os.write(master, answer.encode() + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(60), screen.decode(errors="replace")


@pytest.mark.parametrize("answer", ["y", "n"])
def test_on_a_terminal_install_asks_before_writing_the_key(shell, _isolated_home, answer):
    cli, home, stub = shell
    env = {**cli.env, "ANTHROPIC_API_KEY": KEY}
    code, screen = _on_a_terminal(env, cli.cwd, ["service", "install", "--exec", str(stub)], answer)
    key_file = _isolated_home / "config" / "anthropic-api-key"
    assert f"Write it to {key_file} (mode 0600) and point api_key_file at it? [y/N]" in screen
    assert KEY not in screen
    if answer == "y":
        assert code == 0, screen
        assert key_file.read_text() == KEY + "\n"
        assert (home / ".config" / "systemd" / "user" / "tegbatchd.service").exists()
    else:
        assert code == 5 and "the service could not authenticate" in screen
        assert not key_file.exists() and not (home / ".config").exists()


def test_a_base_url_with_credentials_is_left_out_and_said(shell, _isolated_home):
    cli, home, stub = shell
    (_isolated_home / "config").mkdir(parents=True)
    key_file = _isolated_home / "config" / "k"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    (_isolated_home / "config" / "config.yaml").write_text(f"api_key_file: {key_file}\n")
    url = "https://gateway-user:hunter2-secret@gateway.example.test/anthropic"
    for argv in (["--print"], []):
        out = cli("service", "install", *argv, "--exec", str(stub), ANTHROPIC_BASE_URL=url, check=True).out
        assert "ANTHROPIC_BASE_URL is NOT passed to the service: it holds credentials" in out
        assert "api.base_url from the config" in out
        assert "hunter2" not in out
    unit = (home / ".config" / "systemd" / "user" / "tegbatchd.service").read_text()
    assert "hunter2" not in unit and "ANTHROPIC_BASE_URL" not in unit
    plain = cli("service", "install", "--print", "--exec", str(stub), ANTHROPIC_BASE_URL="https://gw.example.test",
                check=True).out
    assert 'Environment="ANTHROPIC_BASE_URL=https://gw.example.test"' in plain and "is NOT passed" not in plain


def test_the_units_path_has_each_folder_once(shell, _isolated_home):
    cli, home, stub = shell
    path = f"{os.path.dirname(sys.executable)}:/usr/bin:/bin:/usr/bin::/bin:{os.path.dirname(sys.executable)}"
    out = cli("service", "install", "--print", "--exec", str(stub), PATH=path, check=True).out
    assert f'Environment="PATH={os.path.dirname(sys.executable)}:/usr/bin:/bin"' in out


class Recorder:
    """A notifier that keeps what it was given (delivery confirmed)."""

    def __init__(self):
        self.sent = []

    async def send(self, notice) -> bool:
        self.sent.append(notice)
        return True


def test_a_daemon_without_a_key_notifies_once_and_goes_on_once_it_has_one(api_cli, tmp_path, monkeypatch,
                                                                          _isolated_home, data_root):
    from tegbatchd.daemon import Daemon

    cli, emu = api_cli("--process-seconds", "0")
    config = _isolated_home / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("poll_interval_minutes: 0.005\nmax_poll_interval_minutes: 0.005\n")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", "misc/{custom_id}.md",
        check=True)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)  # no key in the daemon's environment
    recorder = Recorder()
    daemon = Daemon(heartbeat=0.05, notifier=recorder)

    async def scenario():
        task = asyncio.create_task(daemon.run())
        await _until(lambda: daemon.polls.count("retry") >= 3)  # polled again and again without a key
        assert not (data_root / "misc").exists()
        key_file = tmp_path / "key"
        key_file.write_text(TEST_KEY)
        key_file.chmod(0o600)
        config.write_text(f"poll_interval_minutes: 0.005\nmax_poll_interval_minutes: 0.005\n"
                          f"api_key_file: {key_file}\n")
        await _until(lambda: any("ready" in n.title for n in recorder.sent))
        daemon.request_stop()
        await task

    asyncio.run(scenario())
    titles = [n.title for n in recorder.sent]
    assert titles.count("tegbatchd: no API key") == 1, titles
    [no_key] = [n for n in recorder.sent if n.title == "tegbatchd: no API key"]
    assert "no Anthropic API key found" in no_key.body and "--store-key" in no_key.body
    assert len(list((data_root / "misc").glob("*.md"))) == 2


async def _until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_keyless_polls_show_one_notice_on_a_real_desktop(api_cli, tmp_path, dunst_desktop):  # noqa: F811
    from tests.test_desktop_e2e import bus_env, closed_history

    cli, emu = api_cli("--process-seconds", "0")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 1)), "--output", "misc/{custom_id}.md",
        check=True)
    for _ in range(3):  # each poll finds work and no key
        done = cli("poll", "--once", subprocess=True, ANTHROPIC_API_KEY="", **bus_env(dunst_desktop))
        assert done.code == 5 and "no Anthropic API key found" in done.out
    history = closed_history(dunst_desktop)
    assert [(e["appname"], e["summary"]) for e in history] == [("tegbatchd", "tegbatchd: no API key")]
    assert "--store-key" in history[0]["body"]
