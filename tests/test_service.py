"""`tegbatchd service install|uninstall|status` as a subprocess: with no service manager reachable (files
and printed commands), and against a real `systemd --user` manager in a private mount namespace."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tegbatchd.units import DAEMON, LINUX, MACOS, TIMER, is_key_like, plan
from tests.support.desktop import require, user_manager, wait_until  # noqa: F401
from tests.support.forkserver import spawn

TEGBATCHD = [sys.executable, "-m", "tegbatchd"]  # through the user manager: its own process

FAKE_KEY = "sk-ant-api03-must-never-leak"


@pytest.fixture
def user_home(tmp_path) -> Path:
    home = tmp_path / "user"
    home.mkdir()
    return home


@pytest.fixture
def offline_env(tmp_path, user_home) -> dict:
    """HOME in tmp_path and an empty XDG_RUNTIME_DIR: no systemd user manager can be reached."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return {"PATH": os.environ["PATH"], "HOME": str(user_home), "XDG_RUNTIME_DIR": str(runtime),
            "TEGBATCHD_HOME": os.environ["TEGBATCHD_HOME"], "LANG": "C.UTF-8"}


@pytest.fixture(autouse=True)
def service_key_file(tmp_path) -> Path:
    """The service's way to the key in these tests: api_key_file (0600) in the config of TEGBATCHD_HOME."""
    home = Path(os.environ["TEGBATCHD_HOME"])
    key_file = home / "config" / "anthropic-api-key"
    key_file.parent.mkdir(parents=True, mode=0o700)
    key_file.write_text(FAKE_KEY + "\n")
    key_file.chmod(0o600)
    (home / "config" / "config.yaml").write_text(f"api_key_file: {key_file}\n")
    return key_file


@pytest.fixture
def stub(tmp_path) -> Path:
    path = tmp_path / "bin" / "tegbatchd"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def service(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`tegbatchd service ARGS` as a real process (forked from the warm fork server) with env."""
    proc = spawn(["service", *args], env=env, cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    out, err = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(["tegbatchd", "service", *args], proc.returncode, out, err)
    if check and done.returncode != 0:
        raise AssertionError(f"service {args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def tree(root: Path) -> dict[str, str]:
    """Every path under root: file contents, 'dir', or '-> target' for links."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            out[key] = "dir"
        else:
            out[key] = path.read_text(errors="replace")
    return out


def unit_dir(home: Path) -> Path:
    return home / ".config" / "systemd" / "user"


# --- no manager reachable -------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", [LINUX, MACOS])
@pytest.mark.parametrize("timer", [False, True])
def test_print_writes_nothing(tmp_path, offline_env, stub, platform, timer):
    before = tree(tmp_path)
    env = {**offline_env, "ANTHROPIC_API_KEY": FAKE_KEY}
    out = service(env, "install", "--print", "--exec", str(stub), "--platform", platform,
                  *(["--timer"] if timer else [])).stdout
    assert tree(tmp_path) == before
    expected = plan(platform, TIMER if timer else DAEMON, stub, env, Path(env["TEGBATCHD_HOME"]) / "logs")
    for path, text in expected.files.items():
        assert f"# {path}\n{text.rstrip()}" in out
    assert ("systemctl --user enable --now" if platform == LINUX else "launchctl bootstrap gui/") in out
    assert "No API key is written into the service" in out
    assert "The service reads the API key from api_key_file" in out
    assert FAKE_KEY not in out


def test_install_and_uninstall_without_a_manager(tmp_path, user_home, offline_env, stub):
    before = tree(tmp_path)
    out = service(offline_env, "install", "--exec", str(stub)).stdout
    unit = unit_dir(user_home) / "tegbatchd.service"
    expected = plan(LINUX, DAEMON, stub, offline_env, Path("unused"))
    assert unit.read_text() == expected.files[unit]
    assert "ExecStart=" + str(stub) + " daemon" in unit.read_text()
    assert "not reachable from here; run these yourself:\n  systemctl --user daemon-reload\n" \
           "  systemctl --user enable --now tegbatchd.service" in out
    manifest = Path(offline_env["TEGBATCHD_HOME"]) / "state" / "service-manifest.json"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    assert json.loads(manifest.read_text())["files"] == [str(unit)]
    written = set(tree(tmp_path)) - set(before)
    assert {p for p in written if not p.startswith("home")} == {
        "user/.config", "user/.config/systemd", "user/.config/systemd/user", "user/.config/systemd/user/tegbatchd.service"}

    status = service(offline_env, "status").stdout
    assert str(unit) in status and "tegbatchd.service: unknown (the systemd user manager is not reachable)" in status
    info = json.loads(service(offline_env, "status", "--json").stdout)
    assert info["installed"] is True and info["files"] == {str(unit): True}

    out = service(offline_env, "uninstall").stdout
    assert f"removed {unit}" in out and "systemctl --user stop tegbatchd.service" in out
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("home")} == {
        k: v for k, v in before.items() if not k.startswith("home")}
    assert all(v == "dir" for k, v in after.items()
               if k.startswith("home") and not k.startswith("home/config"))  # state dir kept, empty
    assert "nothing to remove" in service(offline_env, "uninstall").stdout


def test_uninstall_removes_the_links_an_offline_enable_made(tmp_path, user_home, offline_env, stub):
    require("systemctl")
    before = tree(user_home)
    service(offline_env, "install", "--exec", str(stub))
    subprocess.run(["systemctl", "--user", "enable", "tegbatchd.service"], env=offline_env, check=True,
                   capture_output=True)  # works without a manager: it only makes the link
    link = unit_dir(user_home) / "default.target.wants" / "tegbatchd.service"
    assert link.is_symlink()
    service(offline_env, "uninstall")
    assert not link.is_symlink()
    assert tree(user_home) == before


def test_switching_to_the_timer_replaces_the_daemon(tmp_path, user_home, offline_env, stub):
    before = tree(user_home)
    service(offline_env, "install", "--exec", str(stub))
    out = service(offline_env, "install", "--timer", "--exec", str(stub)).stdout
    assert "replacing the installed daemon (tegbatchd.service)" in out
    assert sorted(p.name for p in unit_dir(user_home).iterdir()) == ["tegbatchd-poll.service",
                                                                    "tegbatchd-poll.timer"]
    assert "poll --once" in (unit_dir(user_home) / "tegbatchd-poll.service").read_text()
    service(offline_env, "uninstall")
    assert tree(user_home) == before


def test_macos_install_writes_the_agent_and_its_log_folder(tmp_path, user_home, offline_env, stub):
    before = tree(tmp_path)
    out = service(offline_env, "install", "--platform", "macos", "--exec", str(stub)).stdout
    plist = user_home / "Library" / "LaunchAgents" / "io.tegbatchd.daemon.plist"
    logs = Path(offline_env["TEGBATCHD_HOME"]) / "logs"
    assert plist.read_text() == plan(MACOS, DAEMON, stub, offline_env, logs).files[plist]
    assert logs.is_dir()
    assert f"launchctl bootstrap gui/{os.getuid()} {plist}" in out
    out = service(offline_env, "uninstall").stdout
    assert f"launchctl bootout gui/{os.getuid()}/io.tegbatchd.daemon" in out
    assert not plist.exists() and not (user_home / "Library").exists() and not logs.exists()
    assert {k for k in tree(tmp_path) if not k.startswith("home")} == {k for k in before if not k.startswith("home")}


def test_status_when_nothing_is_installed(offline_env):
    assert "not installed" in service(offline_env, "status").stdout
    assert json.loads(service(offline_env, "status", "--json").stdout) == {"installed": False,
                                                                          "found_unrecorded": []}


def test_a_relative_exec_path_is_refused(offline_env):
    done = service(offline_env, "install", "--exec", "bin/tegbatchd", check=False)
    assert done.returncode == 2 and "is not an absolute path to an executable file" in done.stderr


def test_the_default_executable_is_the_installed_entry_point(offline_env):
    out = service(offline_env, "install", "--print").stdout
    assert f"ExecStart={Path(sys.executable).parent / 'tegbatchd'} daemon" in out


# --- a real systemd --user manager ----------------------------------------------------------------------
def recording_stub(folder: Path, record: Path) -> Path:
    """A stand-in for tegbatchd: records its arguments and environment; `daemon` then stays up."""
    folder.mkdir(parents=True)
    record.mkdir()
    stub = folder / "tegbatchd"
    stub.write_text(f"""#!/bin/sh
env > "{record}/$1.env"
printf '%s\\n' "$@" > "{record}/$1.args"
if [ "$1" = daemon ]; then exec sleep 300; fi
""")
    stub.chmod(0o755)
    return stub


def install_env(tb_home: Path) -> dict:
    """What the person's shell has when installing: a key in the environment, which must not travel."""
    return {"TEGBATCHD_HOME": str(tb_home), "ANTHROPIC_API_KEY": FAKE_KEY}


def assert_clean_environment(env_file: Path, tb_home: Path) -> None:
    lines = env_file.read_text().splitlines()
    assert f"TEGBATCHD_HOME={tb_home}" in lines
    assert not [line for line in lines if is_key_like(line.split("=", 1)[0], line)], lines


def test_real_manager_runs_the_installed_daemon(user_manager):  # noqa: F811
    home = user_manager.home
    record, tb_home = home / "record", home / "tb"
    stub = recording_stub(home / "bin dir", record)  # a blank in the path, as ~/My Tools/ would have
    env = install_env(tb_home)
    out = user_manager.run([*TEGBATCHD, "service", "install", "--store-key", "--exec", str(stub)], env=env).stdout
    key_file = tb_home / "config" / "anthropic-api-key"
    assert f"wrote the API key to {key_file} (0600)" in out and FAKE_KEY not in out
    assert key_file.read_text() == FAKE_KEY + "\n" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "ran: systemctl --user enable --now tegbatchd.service" in out
    assert "tegbatchd.service: active" in out
    assert user_manager.systemctl("is-active", "tegbatchd.service").stdout.strip() == "active"
    wait_until(lambda: (record / "daemon.args").exists(), timeout=10, what="the stub daemon")
    assert (record / "daemon.args").read_text().splitlines() == ["daemon"]
    assert_clean_environment(record / "daemon.env", tb_home)

    status = user_manager.run([*TEGBATCHD, "service", "status"], env=env).stdout
    assert "tegbatchd.service: active" in status

    def doctor() -> tuple[int, dict]:  # offline: a dead loopback port, no package index
        done = user_manager.run([*TEGBATCHD, "doctor", "--json"], check=False, env={
            **env, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "TEGBATCHD_VERSION_URL": "off"})
        return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}

    code, checks = doctor()
    assert checks["service"] == {"name": "service", "status": "ok", "fix": None,
                                 "detail": "the daemon (tegbatchd.service) is active"}
    assert checks["key"]["status"] == "ok" and code == 0
    user_manager.systemctl("stop", "tegbatchd.service")
    code, checks = doctor()
    assert code == 1 and checks["service"]["status"] == "fail"
    assert checks["service"]["detail"] == "the daemon (tegbatchd.service) is installed but inactive"
    assert "journalctl --user -u tegbatchd.service" in checks["service"]["fix"]

    out = user_manager.run([*TEGBATCHD, "service", "uninstall"], env=env).stdout
    assert "ran: systemctl --user disable --now tegbatchd.service" in out
    assert user_manager.systemctl("is-active", "tegbatchd.service", check=False).stdout.strip() == "inactive"
    assert not (unit_dir(home) / "tegbatchd.service").exists()


def test_real_manager_lists_the_timer_variant(user_manager):  # noqa: F811
    home = user_manager.home
    record, tb_home = home / "record", home / "tb"
    stub = recording_stub(home / "bin", record)
    env = install_env(tb_home)
    user_manager.run([*TEGBATCHD, "service", "install", "--store-key", "--exec", str(stub)], env=env)
    out = user_manager.run([*TEGBATCHD, "service", "install", "--timer", "--exec", str(stub)], env=env).stdout
    assert "replacing the installed daemon" in out and "tegbatchd-poll.timer: active" in out
    assert user_manager.systemctl("is-active", "tegbatchd.service", check=False).stdout.strip() == "inactive"
    timers = user_manager.systemctl("list-timers", "--all", "--no-pager").stdout
    assert "tegbatchd-poll.timer" in timers and "tegbatchd-poll.service" in timers

    user_manager.systemctl("start", "tegbatchd-poll.service")  # what the timer does every 5 minutes
    assert (record / "poll.args").read_text().splitlines() == ["poll", "--once"]
    assert_clean_environment(record / "poll.env", tb_home)

    user_manager.run([*TEGBATCHD, "service", "uninstall"], env=env)
    assert "tegbatchd-poll" not in user_manager.systemctl("list-timers", "--all", "--no-pager").stdout
    assert not unit_dir(home).exists() or not any(unit_dir(home).iterdir())
