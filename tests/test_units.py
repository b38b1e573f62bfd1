"""The unit templates, filled in: systemd-analyze verify has nothing to say, plists load with the right
keys and types, and nothing key-like ever reaches them."""

from __future__ import annotations

import configparser
import os
import plistlib
import subprocess
from pathlib import Path

import pytest

from tegbatchd.resources import shipped
from tegbatchd.units import DAEMON, LINUX, MACOS, TIMER, VARIANTS, is_key_like, plan, systemd_command
from tests.support.desktop import require

ENVIRON = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "DISPLAY": ":0",
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus",
    "ANTHROPIC_API_KEY": "sk-ant-api03-secret",
    "GITHUB_TOKEN": "ghp_secret",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "TEGBATCHD_HOME": "~/tb home",
    "TEGBATCHD_DATA_DIR": "sk-ant-looks-like-a-key",
}


@pytest.fixture
def stub(tmp_path) -> Path:
    """An executable at an awkward path (a blank, a percent sign, a dollar sign)."""
    path = tmp_path / "bin dir" / "teg%bat$chd"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def environ_for(home: Path) -> dict:
    return {**ENVIRON, "HOME": str(home)}


def verify(home: Path, files: list[Path]) -> str:
    """systemd-analyze --user verify output (stdout and stderr); empty means clean."""
    runtime = home.parent / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(["systemd-analyze", "--user", "verify", *map(str, files)], env=env,
                          capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip()


def write_plan(unit_plan) -> list[Path]:
    for path, text in unit_plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(unit_plan.files)


@pytest.mark.parametrize("variant", [DAEMON, TIMER])
def test_systemd_units_verify_without_a_word(tmp_path, stub, variant):
    require("systemd-analyze")
    home = tmp_path / "home"
    unit_plan = plan(LINUX, variant, stub, environ_for(home), tmp_path / "logs")
    files = write_plan(unit_plan)
    assert unit_plan.unit_dir == home / ".config" / "systemd" / "user"
    assert verify(home, files) == ""


def test_the_verify_gate_does_report_mistakes(tmp_path, stub):
    require("systemd-analyze")
    home = tmp_path / "home"
    unit_plan = plan(LINUX, DAEMON, stub, environ_for(home), tmp_path / "logs")
    [path] = write_plan(unit_plan)
    path.write_text(path.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "sometimes" in verify(home, [path])


def test_the_timer_starts_a_unit_that_is_installed_with_it(tmp_path, stub):
    unit_plan = plan(LINUX, TIMER, stub, environ_for(tmp_path), tmp_path / "logs")
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read_string(unit_plan.files[unit_plan.unit_dir / "tegbatchd-poll.timer"])
    assert unit_plan.unit_dir / timer["Timer"]["Unit"] in unit_plan.files
    assert timer["Timer"]["OnCalendar"] == "*:0/5" and timer["Timer"]["Persistent"] == "true"
    assert unit_plan.start == "tegbatchd-poll.timer"


def test_systemd_exec_and_environment(tmp_path, stub):
    unit_plan = plan(LINUX, DAEMON, stub, environ_for(tmp_path), tmp_path / "logs")
    text = next(iter(unit_plan.files.values()))
    assert f"ExecStart={systemd_command(str(stub))} daemon\n" in text
    assert systemd_command(str(stub)) == f'"{str(stub).replace("%", "%%")}"'
    assert f'Environment="TEGBATCHD_HOME={Path("~/tb home").expanduser().resolve()}"' in text
    assert 'Environment="DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus"' in text
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "TEGBATCHD_DATA_DIR"):
        assert name not in text and ENVIRON[name] not in text


def test_per_login_bus_addresses_are_left_out(tmp_path, stub):
    environ = {**environ_for(tmp_path), "DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-x,guid=1"}
    assert "DBUS_SESSION_BUS_ADDRESS" not in plan(LINUX, DAEMON, stub, environ, tmp_path).environment


def test_xdg_config_home_is_honoured(tmp_path, stub):
    environ = {**environ_for(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert plan(LINUX, TIMER, stub, environ, tmp_path).unit_dir == tmp_path / "xdg" / "systemd" / "user"


def test_key_like_names_and_values():
    assert is_key_like("ANTHROPIC_API_KEY") and is_key_like("GITHUB_TOKEN") and is_key_like("DB_PASSWORD")
    assert is_key_like("TEGBATCHD_DATA_DIR", "/x/sk-ant-abc")
    assert not is_key_like("PATH", "/usr/bin") and not is_key_like("TEGBATCHD_HOME", "/home/a")


@pytest.mark.parametrize("variant", [DAEMON, TIMER])
def test_plists_load_with_the_required_keys(tmp_path, variant):
    exe = tmp_path / "a&b <c>" / "tegbatchd"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    logs = tmp_path / "Logs & more"
    unit_plan = plan(MACOS, variant, exe, environ_for(tmp_path), logs)
    [(path, text)] = unit_plan.files.items()
    assert path == tmp_path / "Library" / "LaunchAgents" / f"{unit_plan.start}.plist"
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == unit_plan.start and isinstance(plist["Label"], str)
    args = plist["ProgramArguments"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert args[0] == str(exe) and Path(args[0]).is_absolute()
    assert args[1:] == (["daemon"] if variant == DAEMON else ["poll", "--once"])
    assert plist["RunAtLoad"] is True
    env = plist["EnvironmentVariables"]
    assert isinstance(env, dict) and set(env) == {"PATH", "TEGBATCHD_HOME"}
    assert not any(is_key_like(k, v) for k, v in env.items())
    assert plist["StandardOutPath"] == str(logs / f"{variant if variant == DAEMON else 'poll'}.out.log")
    assert isinstance(plist["StandardErrorPath"], str)
    if variant == DAEMON:
        assert plist["KeepAlive"] == {"SuccessfulExit": False}
    else:
        minutes = [slot["Minute"] for slot in plist["StartCalendarInterval"]]
        assert minutes == list(range(0, 60, 5))


def test_every_template_is_shipped_and_filled_completely(tmp_path, stub):
    for (platform, variant), (names, _) in VARIANTS.items():
        for name in names:
            assert shipped("systemd" if platform == LINUX else "launchd", name).is_file()
        for text in plan(platform, variant, stub, environ_for(tmp_path), tmp_path).files.values():
            assert "@TEGBATCHD@" not in text and "@ENVIRONMENT@" not in text and "@LOG_DIR@" not in text


def test_a_relative_executable_is_refused(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        plan(LINUX, DAEMON, Path("bin/tegbatchd"), environ_for(tmp_path), tmp_path)


@pytest.mark.parametrize("platform", [LINUX, MACOS])
def test_the_base_url_goes_with_the_service_unless_it_holds_credentials(tmp_path, stub, platform):
    """A person behind a gateway: the service must reach the same endpoint as their shell."""
    gateway = "https://llm-gateway.example.com/anthropic"
    unit_plan = plan(platform, DAEMON, stub, {**environ_for(tmp_path), "ANTHROPIC_BASE_URL": gateway}, tmp_path)
    assert unit_plan.environment["ANTHROPIC_BASE_URL"] == gateway
    assert gateway in next(iter(unit_plan.files.values()))
    for secretive in ("https://me:hunter2@llm-gateway.example.com/", "https://llm-gateway.example.com/?sig=abc",
                      "http://127.0.0.1:8080/sk-ant-api03-xyz", "ftp://llm-gateway.example.com/", "not a url"):
        environ = {**environ_for(tmp_path), "ANTHROPIC_BASE_URL": secretive}
        unit_plan = plan(platform, DAEMON, stub, environ, tmp_path)
        assert "ANTHROPIC_BASE_URL" not in unit_plan.environment, secretive
        assert secretive not in next(iter(unit_plan.files.values()))
