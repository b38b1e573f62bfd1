"""Where things live: state, config, logs (platformdirs, or TEGBATCHD_HOME) and the data root."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tegbatchd.errors import ConfigError

APP = "tegbatchd"
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class Paths:
    state_dir: Path
    config_dir: Path
    log_dir: Path

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def archive_dir(self) -> Path:
        """Submitted requests, one JSONL per intent: what retry resubmits from."""
        return self.state_dir / "requests"

    @property
    def summary_dir(self) -> Path:
        return self.state_dir / "summaries"

    @property
    def lock_dir(self) -> Path:
        return self.state_dir / "locks"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "tegbatchd.log"


def user_paths() -> Paths:
    """Return the state, config and log directories, honouring TEGBATCHD_HOME. Creates nothing."""
    home = os.environ.get("TEGBATCHD_HOME")
    if home:
        base = resolve_user_path(home, "TEGBATCHD_HOME")
        return Paths(base / "state", base / "config", base / "logs")
    import platformdirs

    return Paths(
        Path(platformdirs.user_state_dir(APP)),
        Path(platformdirs.user_config_dir(APP)),
        Path(platformdirs.user_log_dir(APP)),
    )


def resolve_user_path(value: str, source: str) -> Path:
    """Given a path a person typed (env var, flag or config value named by `source`), return it absolute.

    Raise ConfigError for a NUL byte, an unknown `~user` or a symlink loop.
    """
    if "\x00" in value:
        raise ConfigError(f"{source} contains a NUL character", next_step=f"fix {source}")
    try:
        return Path(value).expanduser().resolve()
    except RuntimeError as exc:  # pathlib: "Could not determine home directory." / "Symlink loop from ..."
        raise ConfigError(f"{source} {value!r} cannot be resolved ({str(exc).rstrip('.')})",
                          next_step=f"fix {source}") from None
    except OSError as exc:
        raise ConfigError(f"{source} {value!r} cannot be resolved ({exc.strerror})",
                          next_step=f"fix {source}") from None


def ensure_dir(path: Path) -> Path:
    """Create a private directory (0700) and its missing parents; tighten an existing one we own.

    Raise ConfigError when the path or one of its parents is a file, or it cannot be created.
    """
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot create the folder {path}: {probe} is a file, not a folder",
                          next_step="move that file aside, or point TEGBATCHD_HOME (or --data-dir) elsewhere")
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise ConfigError(f"cannot create the folder {path}: {folder} is a file, not a folder",
                                  next_step="move that file aside") from None
        except OSError as exc:
            raise ConfigError(f"cannot create the folder {folder}: {exc.strerror}",
                              next_step="check the permissions of its parent folder") from None
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(DIR_MODE)
    except PermissionError:
        pass
    return path


def write_private(path: Path, text: str | Iterable[bytes]) -> None:
    """Write a state or config file atomically with mode 0600 and fsync it: a text, or chunks of bytes
    (a 200 MB archive of requests is never joined in memory). Written by the one writer (tegbatchd.writer)."""
    from tegbatchd.writer import write_file

    ensure_dir(path.parent)
    write_file(path, text, mode=FILE_MODE, fsync=True)


def resolve_data_root(cli_value: str | None, config_value: str | None) -> Path:
    """Return the absolute data root: --data-dir, else TEGBATCHD_DATA_DIR, else config, else ./data."""
    sources = ("--data-dir", "TEGBATCHD_DATA_DIR", "data_root in the config")
    for value, source in zip((cli_value, os.environ.get("TEGBATCHD_DATA_DIR"), config_value), sources, strict=True):
        if value:
            return resolve_user_path(value, source)
    try:
        return (Path.cwd() / "data").resolve()
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"the data root ./data cannot be resolved ({exc})",
                          next_step="run from an existing folder or pass --data-dir") from None
