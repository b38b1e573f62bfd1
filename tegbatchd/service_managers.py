"""The service managers behind `tegbatchd service`: systemd's user manager and launchd.

Each gives the commands that start, stop and inspect a unit (or label), so they can be run or printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from tegbatchd.errors import UserError
from tegbatchd.units import LINUX


class Systemd:
    """`systemctl --user`: reachable only when a user manager answers (not on a headless root shell)."""

    name = "the systemd user manager"
    LIVE_STATES = {"running", "degraded", "starting", "initializing", "maintenance", "stopping"}

    def reachable(self) -> bool:
        if not shutil.which("systemctl"):
            return False
        out = run_command(["systemctl", "--user", "is-system-running"], check=False)
        return out.stdout.strip() in self.LIVE_STATES

    def prepare_commands(self, unit: str) -> list[list[str]]:
        return []

    def start_commands(self, unit: str, unit_file: Path, restart: bool) -> list[list[str]]:
        commands = [["systemctl", "--user", "daemon-reload"]]
        if restart:
            return commands + [["systemctl", "--user", "enable", unit], ["systemctl", "--user", "restart", unit]]
        return commands + [["systemctl", "--user", "enable", "--now", unit]]

    def stop_commands(self, unit: str) -> list[list[str]]:
        return [["systemctl", "--user", "disable", "--now", unit]]

    def leftover_commands(self, unit: str) -> list[list[str]]:
        """What the person runs once the files are gone (the enable links are removed already)."""
        return [["systemctl", "--user", "stop", unit], ["systemctl", "--user", "daemon-reload"]]

    def after_remove_commands(self) -> list[list[str]]:
        return [["systemctl", "--user", "daemon-reload"]]

    def state(self, unit: str) -> str:
        return run_command(["systemctl", "--user", "is-active", unit], check=False).stdout.strip() or "unknown"


class Launchd:
    """`launchctl` in the gui/<uid> domain (macOS)."""

    name = "launchd"

    def __init__(self) -> None:
        self.domain = f"gui/{os.getuid()}"

    def reachable(self) -> bool:
        return shutil.which("launchctl") is not None

    def prepare_commands(self, label: str) -> list[list[str]]:
        return [["launchctl", "bootout", f"{self.domain}/{label}"]]  # fails when not loaded: fine

    def start_commands(self, label: str, plist: Path, restart: bool) -> list[list[str]]:
        return [["launchctl", "bootstrap", self.domain, str(plist)]]

    def stop_commands(self, label: str) -> list[list[str]]:
        return [["launchctl", "bootout", f"{self.domain}/{label}"]]

    def leftover_commands(self, label: str) -> list[list[str]]:
        return self.stop_commands(label)

    def after_remove_commands(self) -> list[list[str]]:
        return []

    def state(self, label: str) -> str:
        out = run_command(["launchctl", "print", f"{self.domain}/{label}"], check=False)
        if out.returncode != 0:
            return "not loaded"
        return "running" if "state = running" in out.stdout else "loaded, not running"


def manager_for(platform: str) -> Systemd | Launchd:
    return Systemd() if platform == LINUX else Launchd()


def run_command(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a manager command, capturing its output. Raise UserError if it fails and check is set."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if check:
            raise UserError(f"`{shlex.join(argv)}` failed: {exc}") from None
        return subprocess.CompletedProcess(argv, 1, "", str(exc))
    if check and done.returncode != 0:
        raise UserError(f"`{shlex.join(argv)}` failed: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done
