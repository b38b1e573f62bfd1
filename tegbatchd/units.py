"""The shipped systemd/launchd templates, filled in for this user: where they go, what they carry.

Placeholders: @TEGBATCHD@ (absolute path of the tegbatchd executable), @ENVIRONMENT@ (the variables
passed to the service), @LOG_DIR@ (launchd only: where stdout/stderr go). No API key ever goes into a
unit: the service reads it from api_key_file or the OS keyring.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tegbatchd.resources import shipped


def escape(text: str) -> str:
    """XML-escape &, < and > (what xml.sax.saxutils.escape does, without its import of urllib.request)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


LINUX, MACOS = "linux", "macos"
DAEMON, TIMER = "daemon", "timer"

# (platform, variant) -> (template files, the unit systemd enables / the label launchd bootstraps)
VARIANTS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    (LINUX, DAEMON): (("tegbatchd.service",), "tegbatchd.service"),
    (LINUX, TIMER): (("tegbatchd-poll.service", "tegbatchd-poll.timer"), "tegbatchd-poll.timer"),
    (MACOS, DAEMON): (("io.tegbatchd.daemon.plist",), "io.tegbatchd.daemon"),
    (MACOS, TIMER): (("io.tegbatchd.poll.plist",), "io.tegbatchd.poll"),
}

# ANTHROPIC_BASE_URL (a gateway or proxy the person uses; not a secret) only when it carries no credentials.
PASSED_ENV = ("TEGBATCHD_HOME", "TEGBATCHD_DATA_DIR", "PATH", "ANTHROPIC_BASE_URL")
# Linux only: the session bus (only a fixed socket path; other addresses change at each login) and the
# display, which the opener (xdg-open) needs to show a file manager.
PASSED_DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
_ABSOLUTE_ENV = ("TEGBATCHD_HOME", "TEGBATCHD_DATA_DIR")
_KEY_LIKE = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def is_key_like(name: str, value: str = "") -> bool:
    """True for a variable that looks like it carries a secret (by its name, or an Anthropic key value)."""
    return bool(_KEY_LIKE.search(name)) or "sk-ant-" in value


def unit_environment(platform: str, environ: dict) -> dict[str, str]:
    """Given the installing process's environment, return the variables the service gets."""
    names = PASSED_ENV + (PASSED_DESKTOP_ENV if platform == LINUX else ())
    env: dict[str, str] = {}
    for name in names:
        value = environ.get(name)
        if not value or "\n" in value or is_key_like(name, value):
            continue
        if name in _ABSOLUTE_ENV:
            value = str(Path(value).expanduser().resolve())
        if name == "DBUS_SESSION_BUS_ADDRESS" and not value.startswith("unix:path="):
            continue
        if name == "ANTHROPIC_BASE_URL" and not _plain_url(value):
            continue
        if name == "PATH":
            value = _unique_path(value)
        env[name] = value
    return env


def _unique_path(value: str) -> str:
    """PATH with each folder once (the first occurrence wins, as it does in a lookup) and no empty entry."""
    return os.pathsep.join(dict.fromkeys(part for part in value.split(os.pathsep) if part))


def dropped_notes(environ: dict) -> list[str]:
    """What the person would not guess is left out of the unit, each with what to do instead."""
    url = environ.get("ANTHROPIC_BASE_URL")
    if url and "\n" not in url and not _plain_url(url):
        return ["ANTHROPIC_BASE_URL is NOT passed to the service: it holds credentials (user:password@ or a "
                "query string) or is not an http(s) URL, and unit files are readable; the service uses "
                "api.base_url from the config (a 0600 file: put the URL there) or else https://api.anthropic.com"]
    return []


def _plain_url(value: str) -> bool:
    """An http(s) URL with no credentials in it (user:password@ or a query string): fit for a unit file.

    The base URL is how a person points tegbatchd at a gateway or proxy; the service must use the same.
    """
    try:
        parts = urlsplit(value)
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not has_userinfo and not parts.query


def unit_dir(platform: str, environ: dict) -> Path:
    """~/.config/systemd/user (XDG_CONFIG_HOME honoured) or ~/Library/LaunchAgents, for HOME in environ."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    if platform == MACOS:
        return home / "Library" / "LaunchAgents"
    xdg = environ.get("XDG_CONFIG_HOME")
    config = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return config / "systemd" / "user"


# --- escaping -------------------------------------------------------------------------------------------
def _systemd_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def systemd_command(path: str) -> str:
    """The command word of ExecStart=: specifiers escaped, quoted when it has blanks.

    ($ needs no escape there: variables are expanded in the arguments only.)
    """
    word = _systemd_escape(path)
    return f'"{word}"' if any(c.isspace() for c in path) or '"' in path else word


def _systemd_environment(env: dict[str, str]) -> str:
    return "\n".join(f'Environment="{_systemd_escape(k)}={_systemd_escape(v)}"' for k, v in env.items())


def _plist_environment(env: dict[str, str]) -> str:
    return "\n".join(f"    <key>{escape(k)}</key>\n    <string>{escape(v)}</string>" for k, v in env.items())


def _fill(template: str, values: dict[str, str]) -> str:
    lines = []
    for line in template.splitlines(keepends=True):
        if line.strip() == "@ENVIRONMENT@" and not values["@ENVIRONMENT@"]:
            continue
        for placeholder, value in values.items():
            line = line.replace(placeholder, value)
        lines.append(line)
    text = "".join(lines)
    left = _PLACEHOLDER.findall(text)
    if left:
        raise ValueError(f"unfilled placeholders {sorted(set(left))} in a unit template")
    return text


def render(platform: str, name: str, executable: Path, env: dict[str, str], log_dir: Path | None) -> str:
    """Given a template name and the install's facts, return the unit file's text."""
    template = shipped("systemd" if platform == LINUX else "launchd", name).read_text(encoding="utf-8")
    if platform == LINUX:
        return _fill(template, {"@TEGBATCHD@": systemd_command(str(executable)),
                                "@ENVIRONMENT@": _systemd_environment(env)})
    return _fill(template, {"@TEGBATCHD@": escape(str(executable)), "@LOG_DIR@": escape(str(log_dir)),
                            "@ENVIRONMENT@": _plist_environment(env)})


@dataclass(frozen=True)
class UnitPlan:
    """What an install writes: files (path -> text) and the unit or label to start."""

    platform: str
    variant: str
    unit_dir: Path
    files: dict[Path, str]
    start: str
    environment: dict[str, str]
    log_dir: Path | None
    notes: tuple[str, ...] = ()


def plan(platform: str, variant: str, executable: Path, environ: dict, log_dir: Path) -> UnitPlan:
    """Given the platform, variant, absolute executable, environment and log dir, return the install."""
    if not executable.is_absolute():
        raise ValueError(f"the executable must be an absolute path, not {executable}")
    names, start = VARIANTS[(platform, variant)]
    folder = unit_dir(platform, environ)
    env = unit_environment(platform, environ)
    logs = log_dir if platform == MACOS else None
    files = {folder / name: render(platform, name, executable, env, logs) for name in names}
    return UnitPlan(platform, variant, folder, files, start, env, logs, tuple(dropped_notes(environ)))
