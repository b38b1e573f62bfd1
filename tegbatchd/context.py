"""What every command needs: paths, the effective config, the data root and the store, opened lazily."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tegbatchd.config import Config, load_config
from tegbatchd.paths import Paths, ensure_dir, resolve_data_root, user_paths


def _print_line(text: str) -> None:
    print(text, flush=True)


@dataclass
class Context:
    paths: Paths = field(default_factory=user_paths)
    data_dir_arg: str | None = None
    json_output: bool = False
    # ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL for this context's API client, read before the environment
    # (the demo points its own context at its emulator this way, leaving os.environ alone)
    api_env: dict[str, str] | None = None
    # where human output lines go: set by the CLI (actions never print; they say through the context)
    out: Callable[[str], None] = field(default=_print_line)
    _config: Config | None = None
    _store: Any = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.paths.config_file)
        return self._config

    def reload_config(self) -> None:
        """Read the config file again on next use (the daemon, after the person edited it)."""
        self._config = None

    @property
    def data_root(self) -> Path:
        return resolve_data_root(self.data_dir_arg, self.config["data_root"])

    @property
    def store(self):
        """The state store, created (0700 dirs, 0600 db) and migrated on first use."""
        if self._store is None:
            from tegbatchd.store import Store

            ensure_dir(self.paths.state_dir)
            self._store = Store.open(self.paths.db_path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def say(self, text: str = "") -> None:
        """Human output (suppressed under --json, where stdout carries only JSON)."""
        if not self.json_output:
            self.out(text)

    def emit_json(self, payload: Any) -> None:
        if self.json_output:
            json.dump(payload, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
            sys.stdout.flush()
