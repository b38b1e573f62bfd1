"""`tegbatchd service install [--timer] [--print] | uninstall | status`: the background service.

Linux: systemd user units in ~/.config/systemd/user. macOS: a launchd agent in ~/Library/LaunchAgents.
What install wrote is recorded in state_dir/service-manifest.json, so uninstall removes exactly that.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tegbatchd.api import KEYRING_SERVICE, KEYRING_USER
from tegbatchd.errors import EXIT_AUTH, ConfigError, UserError
from tegbatchd.paths import ensure_dir, write_private
from tegbatchd.service_managers import manager_for, run_command
from tegbatchd.units import DAEMON, LINUX, MACOS, TIMER, VARIANTS, UnitPlan, plan, unit_dir

MANIFEST = "service-manifest.json"
KEY_NOTE = ("No API key is written into the service: it reads the key from api_key_file in the config "
            "or from the OS keyring.")


def this_platform() -> str:
    if sys.platform == "darwin":
        return MACOS
    if sys.platform.startswith("linux"):
        return LINUX
    raise UserError(f"service install is not supported on {sys.platform}",
                    next_step="run `tegbatchd poll --once` from your own scheduler")


def running_executable() -> Path | None:
    """The absolute path of the tegbatchd entry point running now (else the one beside Python, or on PATH)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "tegbatchd" and argv0.is_file():
        return Path(os.path.abspath(argv0))
    beside = Path(sys.executable).parent / "tegbatchd"
    if beside.is_file():
        return beside
    found = shutil.which("tegbatchd")
    return Path(os.path.abspath(found)) if found else None


def _executable(exec_path: str | None) -> Path:
    path = Path(exec_path) if exec_path else running_executable()
    if path is None:
        raise UserError("cannot find the tegbatchd executable", next_step="install tegbatchd so it is on PATH")
    if not path.is_absolute() or not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"{path} is not an absolute path to an executable file")
    return path


def _run_all(say, commands: list[list[str]], ignore_failure: bool = False) -> None:
    for argv in commands:
        run_command(argv, check=not ignore_failure)
        say(f"ran: {shlex.join(argv)}")


def _print_commands(say, manager, commands: list[list[str]]) -> None:
    if commands:
        say(f"{manager.name} is not reachable from here; run these yourself:")
        for argv in commands:
            say(f"  {shlex.join(argv)}")


# --- manifest -------------------------------------------------------------------------------------------
def manifest_path(ctx) -> Path:
    return ctx.paths.state_dir / MANIFEST


def read_manifest(ctx) -> dict | None:
    try:
        return json.loads(manifest_path(ctx).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {manifest_path(ctx)}: {exc}",
                        next_step="remove the unit files by hand, then delete this file") from None


def _write_file(path: Path, text: str) -> None:
    from tegbatchd.writer import write_file

    write_file(path, text)


def _missing_dirs(folders: set[Path]) -> set[str]:
    """The folders (and missing parents) that do not exist yet: install creates them, uninstall removes them."""
    missing: set[str] = set()
    for folder in folders:
        while not folder.exists():
            missing.add(str(folder))
            folder = folder.parent
    return missing


# --- install --------------------------------------------------------------------------------------------
KEY_FILE_NAME = "anthropic-api-key"


@dataclass(frozen=True)
class ServiceKey:
    """Whether the service (which never gets ANTHROPIC_API_KEY) can read a key, and from where."""

    source: str | None       # "api_key_file /path" or "the OS keyring"; None: the service has no key
    problem: str | None      # why it has none
    in_environment: bool     # ANTHROPIC_API_KEY is set in this shell (the one thing that does not travel)


def service_key(ctx) -> ServiceKey:
    from tegbatchd.api import service_key_source

    source, problem = service_key_source(ctx.config["api_key_file"])
    return ServiceKey(source, problem, bool(os.environ.get("ANTHROPIC_API_KEY", "").strip()))


def key_file_target(ctx) -> Path:
    """Where --store-key writes the key: the configured api_key_file, else a file beside the config."""
    configured = ctx.config["api_key_file"]
    return Path(configured).expanduser().absolute() if configured else ctx.paths.config_dir / KEY_FILE_NAME


def _refusal(ctx, key: ServiceKey) -> UserError:
    keyring = f"`keyring set {KEYRING_SERVICE} {KEYRING_USER}` (pip install keyring)"
    if key.in_environment:
        return UserError(
            f"the service could not authenticate: ANTHROPIC_API_KEY is set only in this shell, and the service "
            f"does not get it ({key.problem}); nothing was installed",
            next_step=f"run `tegbatchd service install --store-key` to write it to {key_file_target(ctx)} "
                      f"(0600) and point api_key_file at it, or store it with {keyring}, then install again",
            exit_code=EXIT_AUTH)
    return UserError(f"the service could not authenticate: no API key it can read ({key.problem}); nothing was "
                     "installed",
                     next_step=f"put the key in a 0600 file named by api_key_file in the config, or store it with "
                               f"{keyring}, or export ANTHROPIC_API_KEY and add --store-key", exit_code=EXIT_AUTH)


def _set_config_key_file(ctx, path: Path) -> None:
    """Point api_key_file in the user's config file at path (comments and other keys kept)."""
    import re

    from tegbatchd.config import default_text, load_config

    config_file = ctx.paths.config_file
    text = config_file.read_text(encoding="utf-8") if config_file.exists() else default_text()
    line = f"api_key_file: {json.dumps(str(path))}"
    pattern = re.compile(r"^api_key_file:.*$", re.MULTILINE)
    text = pattern.sub(lambda _: line, text, count=1) if pattern.search(text) else text.rstrip("\n") + f"\n{line}\n"
    write_private(config_file, text)
    ctx._config = load_config(config_file)  # what the service will read


def store_key(ctx) -> Path:
    """Write ANTHROPIC_API_KEY to the api_key_file (0600; an existing non-empty file is never overwritten)
    and name it in the config. Return the file's path."""
    from tegbatchd.api import resolve_api_key

    key = resolve_api_key(None) if os.environ.get("ANTHROPIC_API_KEY", "").strip() else None
    if not key:
        raise UserError("--store-key needs the key in ANTHROPIC_API_KEY", next_step="export it, then run again",
                        exit_code=EXIT_AUTH)
    target = key_file_target(ctx)
    if target.exists() and (not target.is_file() or target.read_bytes().strip()):
        raise UserError(f"{target} exists already and is not overwritten ({service_key(ctx).problem})",
                        next_step="fix it (or name it in api_key_file if it holds the key), or remove it, "
                                  "then install again", exit_code=EXIT_AUTH)
    write_private(target, key + "\n")
    if not ctx.config["api_key_file"] or Path(ctx.config["api_key_file"]).expanduser().absolute() != target:
        _set_config_key_file(ctx, target)
    return target


def _key_notes(ctx, key: ServiceKey) -> list[str]:
    notes = [KEY_NOTE]
    if key.source:
        notes.append(f"The service reads the API key from {key.source}.")
    elif key.in_environment:
        notes.append("ANTHROPIC_API_KEY is set here but is NOT passed to the service: install refuses until the "
                     "service can read a key (--store-key writes it to api_key_file, 0600; or use the OS keyring).")
    else:
        notes.append(f"The service would have no API key ({key.problem}): install refuses until it has one.")
    return notes


def _ensure_service_key(args, ctx) -> ServiceKey:
    """The service must be able to authenticate: store the shell's key when asked (--store-key, or yes to
    the prompt on a terminal), else refuse (exit 5) before anything is written."""
    key = service_key(ctx)
    if key.source:
        return key
    confirm = getattr(args, "confirm", None)
    if key.in_environment and (args.store_key or (confirm is not None and confirm(
            f"The service does not get ANTHROPIC_API_KEY. Write it to {key_file_target(ctx)} (mode 0600) "
            "and point api_key_file at it?"))):
        target = store_key(ctx)
        ctx.say(f"wrote the API key to {target} (0600); api_key_file in {ctx.paths.config_file} names it")
        key = service_key(ctx)
        if key.source:
            return key
    raise _refusal(ctx, key)


def cmd_install(args, ctx) -> int:
    say = ctx.say
    platform = args.platform or this_platform()
    variant = TIMER if args.timer else DAEMON
    unit_plan = plan(platform, variant, _executable(args.exec_path), dict(os.environ), ctx.paths.log_dir)
    manager = manager_for(platform)
    previous = read_manifest(ctx)
    same_unit = bool(previous and previous.get("unit") == unit_plan.start)
    prepare = manager.prepare_commands(unit_plan.start)
    start = manager.start_commands(unit_plan.start, next(iter(unit_plan.files)), restart=same_unit)
    if args.print_only:
        return _print_plan(ctx, unit_plan, prepare + start)
    key = _ensure_service_key(args, ctx)
    if previous and not same_unit:
        say(f"replacing the installed {previous.get('variant')} ({previous.get('unit')})")
        _remove(say, previous, manager_for(previous["platform"]), keep=set(map(str, unit_plan.files)))
    folders = {unit_plan.unit_dir} | ({unit_plan.log_dir} if unit_plan.log_dir else set())
    created = _missing_dirs(folders) | set((previous or {}).get("created_dirs", []))
    if unit_plan.log_dir is not None:
        ensure_dir(unit_plan.log_dir)
    for path, text in unit_plan.files.items():
        _write_file(path, text)
        say(f"wrote {path}")
    write_private(manifest_path(ctx), json.dumps({
        "platform": platform, "variant": variant, "unit": unit_plan.start,
        "files": [str(p) for p in unit_plan.files], "created_dirs": sorted(created),
        "environment": sorted(unit_plan.environment),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    if manager.reachable():
        _run_all(say, prepare, ignore_failure=True)
        _run_all(say, start)
        say(f"{unit_plan.start}: {manager.state(unit_plan.start)}")
    else:
        _print_commands(say, manager, prepare + start)
    for note in [*_key_notes(ctx, key), *unit_plan.notes]:
        say(note)
    return 0


def _print_plan(ctx, unit_plan: UnitPlan, start: list[list[str]]) -> int:
    say = ctx.say
    say(f"# nothing written: this is what `service install{' --timer' if unit_plan.variant == TIMER else ''}` "
          "would do")
    for path, text in unit_plan.files.items():
        say(f"\n# {path}")
        say(text.rstrip("\n"))
    if unit_plan.log_dir is not None:
        say(f"\n# log folder (would be created): {unit_plan.log_dir}")
    say(f"\n# environment passed: {', '.join(unit_plan.environment) or 'none'}")
    say("# then run:")
    for argv in start:
        say(f"  {shlex.join(argv)}")
    for note in [*_key_notes(ctx, service_key(ctx)), *unit_plan.notes]:
        say(f"# {note}")
    return 0


# --- uninstall ------------------------------------------------------------------------------------------
# Where `systemctl enable` links our units (their WantedBy=); emptied folders go with them.
WANTS_DIRS = ("default.target.wants", "timers.target.wants")


def _unlink_wants_links(say, unit_file: Path) -> None:
    """Remove the links an offline `systemctl enable` made to this file."""
    for wants in WANTS_DIRS:
        link = unit_file.parent / wants / unit_file.name
        if link.is_symlink() and Path(os.path.realpath(link)) == Path(os.path.realpath(unit_file)):
            link.unlink()
            say(f"removed {link}")


def _remove_empty_wants_dirs(folder: Path) -> None:
    for wants in WANTS_DIRS:
        with contextlib.suppress(OSError):  # absent, or holds other units' links
            (folder / wants).rmdir()


def _remove(say, manifest: dict, manager, keep: frozenset | set = frozenset()) -> None:
    reachable = manager.reachable()
    stop = manager.stop_commands(manifest["unit"])
    if reachable:
        _run_all(say, stop, ignore_failure=True)
    for name in manifest["files"]:
        path = Path(name)
        if manifest["platform"] == LINUX and not reachable:
            _unlink_wants_links(say, path)
        if name not in keep and (path.exists() or path.is_symlink()):
            path.unlink()
            say(f"removed {path}")
    if manifest["platform"] == LINUX:
        for folder in {Path(name).parent for name in manifest["files"]}:
            _remove_empty_wants_dirs(folder)
    for folder in sorted(manifest.get("created_dirs", []), key=len, reverse=True):
        if folder not in keep and Path(folder).is_dir() and not any(Path(folder).iterdir()):
            Path(folder).rmdir()
    if reachable:
        _run_all(say, manager.after_remove_commands(), ignore_failure=True)
    else:
        _print_commands(say, manager, manager.leftover_commands(manifest["unit"]))


def cmd_uninstall(args, ctx) -> int:
    say = ctx.say
    manifest = read_manifest(ctx)
    if manifest is None:
        say(f"nothing to remove: no service was installed by tegbatchd (no {manifest_path(ctx)})")
        return 0
    _remove(say, manifest, manager_for(args.platform or manifest["platform"]))
    manifest_path(ctx).unlink()
    say(f"uninstalled the {manifest['variant']} ({manifest['unit']})")
    return 0


# --- status ---------------------------------------------------------------------------------------------
def cmd_status(args, ctx) -> int:
    say = ctx.say
    manifest = read_manifest(ctx)
    platform = args.platform or (manifest or {}).get("platform") or this_platform()
    manager = manager_for(platform)
    reachable = manager.reachable()
    info: dict[str, Any]  # JSON for --json
    if manifest is None:
        folder = unit_dir(platform, dict(os.environ))
        names = [n for v in (DAEMON, TIMER) for n in VARIANTS[(platform, v)][0]]
        info = {"installed": False, "found_unrecorded": [str(folder / n) for n in names if (folder / n).exists()]}
    else:
        unit = manifest["unit"]
        state = manager.state(unit) if reachable else f"unknown ({manager.name} is not reachable)"
        info = {"installed": True, "platform": manifest["platform"], "variant": manifest["variant"],
                "unit": unit, "state": state, "installed_at": manifest.get("installed_at"),
                "files": {f: Path(f).exists() for f in manifest["files"]}}
    if ctx.json_output:
        ctx.emit_json(info)
        return 0
    if not info["installed"]:
        say("not installed (`tegbatchd service install` installs it)")
        for path in info["found_unrecorded"]:
            say(f"  found, not written by tegbatchd: {path}")
        return 0
    say(f"installed: the {info['variant']} ({info['unit']}) on {info['platform']}, {info['installed_at']}")
    for path, exists in info["files"].items():
        say(f"  {path}{'' if exists else '  (MISSING)'}")
    say(f"{info['unit']}: {info['state']}")
    return 0
