"""`--state FILE`: the store written atomically as JSON, and read back on start."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tegbatchd.errors import InputError


def save_state(path: str, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (temp file in the same directory, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"), ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: str) -> dict[str, Any] | None:
    """Return the saved state, or None when the file does not exist. Raise InputError if unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read emulator state {path}: {exc}",
                         next_step="delete the file to start empty") from exc
