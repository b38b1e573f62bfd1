"""Where things live: state, config, logs (platformdirs, or TEGBATCHD_HOME) and the data root."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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
        base = Path(home).expanduser().resolve()
        return Paths(base / "state", base / "config", base / "logs")
    import platformdirs

    return Paths(
        Path(platformdirs.user_state_dir(APP)),
        Path(platformdirs.user_config_dir(APP)),
        Path(platformdirs.user_log_dir(APP)),
    )


def ensure_dir(path: Path) -> Path:
    """Create a private directory (0700) and its missing parents; tighten an existing one we own."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
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
    for value in (cli_value, os.environ.get("TEGBATCHD_DATA_DIR"), config_value):
        if value:
            return Path(value).expanduser().resolve()
    return (Path.cwd() / "data").resolve()
