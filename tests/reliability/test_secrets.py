"""Secrets: after a full run with a recognisable key (submit, poll, retrieve, a 401, daemon logs, service
and config output, verbose logging), the key is in no file under TEGBATCHD_HOME or the data root (bytes,
the SQLite database and its WAL included) and in no captured output. State and config are private."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path

from tests.conftest import Cli, write_requests
from tests.reliability.support import TEMPLATE, assert_delivered
from tests.support.forkserver import spawn

KEY = "sk-ant-FAKE-7f3a9c-LEAKCANARY"
FRAGMENTS = (KEY.encode(), b"7f3a9c", b"LEAKCANARY")


def _daemon(cli: Cli, log: Path, logged: str, env: dict | None = None) -> tuple[str, str]:
    """Run the daemon until its log file says `logged` once more than now; return its stdout and stderr."""
    def count() -> int:
        return log.read_text().count(logged) if log.exists() else 0

    before = count()
    proc = spawn(["-v", "daemon", "--heartbeat", "0.2"], env={**cli.env, **(env or {})}, cwd=cli.cwd,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count() == before:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the daemon did not log {logged!r}: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_the_api_key_is_never_written_or_printed(api_cli, cli, tmp_path, data_root, _isolated_home):
    good, emu = api_cli("--process-seconds", "1", "--api-key", KEY)
    other, emu_other = api_cli("--api-key", "sk-ant-someone-else")
    run = Cli({**good.env, "ANTHROPIC_API_KEY": KEY}, cli.cwd)
    rejected = Cli({**other.env, "ANTHROPIC_API_KEY": KEY}, cli.cwd)
    config = _isolated_home / "config" / "config.yaml"
    cli("config", "init", check=True)  # the product makes the folders and the file; the test fills it in
    config.write_text("poll_interval_minutes: 0.01\nnotifications:\n  enabled: false\n")
    captured: list[str] = []

    def keep(result):
        captured.extend((result.out, result.err))
        return result

    reqs = write_requests(tmp_path / "r.jsonl", 6)
    sub = keep(run("-v", "submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True)).json()
    batch = sub["batch_ids"][0]
    keep(run("-v", "list", "--refresh"))
    keep(run("-v", "status", batch))
    log = _isolated_home / "logs" / "tegbatchd.log"
    emu.advance(1)  # the batch ends on the emulator's clock
    captured.extend(_daemon(run, log, "retrieved 6/6", {"ANTHROPIC_API_KEY": KEY}))  # logs to the log file
    keep(run("-v", "retrieve", batch, check=True))
    keep(run("-v", "poll", "--once", "--json", check=True))
    assert_delivered(data_root / "commentary" / "misc", reqs, data_root)

    second = write_requests(tmp_path / "r2.jsonl", 2, prefix="late")
    refused = keep(rejected("-v", "submit", "requests", str(second), "--output", "late/{custom_id}.md"))
    keep(run("submit", "requests", str(second), "--output", "late/{custom_id}.md", check=True))  # pending
    keep(rejected("-v", "status", batch))  # a retrieved batch's status is read locally: no API call to refuse
    for result in (refused, keep(rejected("-v", "poll", "--once"))):
        assert result.code != 0 and "the API key was rejected" in (result.err + result.out)
    captured.extend(_daemon(rejected, log, "the API key was rejected", {"ANTHROPIC_API_KEY": KEY}))
    emu.advance(1)  # the late batch ends on the emulator's clock
    keep(run("-v", "poll", "--once", check=True))
    assert_delivered(data_root / "late", second, data_root)

    key_file = tmp_path / "secret" / "anthropic.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    no_env = Cli({k: v for k, v in run.env.items() if k != "ANTHROPIC_API_KEY"}, cli.cwd)
    config.write_text(f"api_key_file: {key_file}\nnotifications:\n  enabled: false\n")
    loose = keep(no_env("status", batch))
    assert loose.code != 0 and "readable by group or others" in loose.out + loose.err
    key_file.chmod(0o600)
    keep(no_env("-v", "status", batch, check=True))
    for argv in (["config", "show"], ["config", "show", "--json"], ["paths"], ["config", "validate"],
                 ["service", "install", "--print"], ["service", "install", "--timer", "--print"]):
        keep(run(*argv, check=True))
    in_url = keep(run("service", "install", "--print", ANTHROPIC_BASE_URL=f"http://user:{KEY}@127.0.0.1:9/",
                      check=True))
    assert "ANTHROPIC_BASE_URL" not in in_url.out.split("# environment passed:")[1].splitlines()[0]

    files = [p for root in (_isolated_home, data_root) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in files) and any(p.name == "tegbatchd.log" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(f in data for f in FRAGMENTS), f"the key is in {path}"
    for text in captured:
        assert not any(f.decode() in text for f in FRAGMENTS), f"the key was printed:\n{text[-2000:]}"
    log = (_isolated_home / "logs" / "tegbatchd.log").read_text()
    assert "retrieved 6/6" in log and "the API key was rejected" in log

    for path in [_isolated_home, *_isolated_home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {mode:o}"
    print(f"\nsecrets: {len(files)} files and {len(captured)} outputs searched; no trace of the key")


def test_config_init_and_written_config_are_private(cli, _isolated_home):
    cli("config", "init", check=True)
    config = _isolated_home / "config" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(_isolated_home).stat().st_mode) == 0o700


def test_the_daemon_log_stays_private_across_a_rotation(cli, _isolated_home):
    logs = _isolated_home / "logs"
    logs.mkdir(parents=True, mode=0o700)
    full = logs / "tegbatchd.log"
    full.write_text("x" * 1_000_000)  # the next line rotates it
    full.chmod(0o600)
    _daemon(cli, full, "daemon started")
    assert sorted(p.name for p in logs.iterdir()) == ["tegbatchd.log", "tegbatchd.log.1"]
    for path in logs.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "daemon started" in full.read_text()
