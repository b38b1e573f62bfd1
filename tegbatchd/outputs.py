"""Output files: paths decided at submit time inside the data root, atomic writes, grouped durability."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from tegbatchd.errors import InputError

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
ALLOWED_FIELDS = ("custom_id", "index")


def render_output(template: str, *, custom_id: str, index: int) -> str:
    """Fill an output template ("commentary/misc/{custom_id}.md") for one request."""
    for name in PLACEHOLDER.findall(template):
        if name not in ALLOWED_FIELDS:
            raise InputError(f"output template {template!r} uses {{{name}}}",
                             next_step=f"use only {', '.join('{' + f + '}' for f in ALLOWED_FIELDS)}")
    return template.replace("{custom_id}", custom_id).replace("{index}", str(index))


def resolve_inside(data_root: Path, relative: str) -> Path:
    """Return the absolute path of `relative` under data_root.

    Raise InputError for an absolute path, a `..` component, an empty name, anything that would
    land outside the data root once symlinks in the root are resolved, an existing folder, or a path
    under a file (nothing could ever be written there).
    """
    if not relative or relative.endswith(("/", "\\")):
        raise InputError(f"output path {relative!r} names no file", next_step="end the template with a file name")
    if "\x00" in relative:
        raise InputError("output path contains a NUL byte")
    candidate = Path(relative)
    if candidate.is_absolute() or relative.startswith("~"):
        raise InputError(f"output path {relative!r} is absolute",
                         next_step="give a path relative to the data root, e.g. commentary/misc/{custom_id}.md")
    if ".." in candidate.parts:
        raise InputError(f"output path {relative!r} leaves the data root (it contains ..)",
                         next_step="give a path inside the data root")
    root = data_root.resolve()
    full = (root / candidate).resolve()
    if full != root and root not in full.parents:
        raise InputError(f"output path {relative!r} resolves outside the data root {root}",
                         next_step="give a path inside the data root")
    if full.is_dir():
        raise InputError(f"output path {relative!r} is a folder", next_step="end the template with a file name")
    existing = next(p for p in full.parents if p.exists())
    if not existing.is_dir():  # found now, before paying for a batch whose answers could never be written
        raise InputError(f"output path {relative!r} cannot be written: {existing} is a file, not a folder",
                         next_step="move that file away, or choose another --output or data root")
    return full


def message_text(message: dict) -> str:
    """All text blocks of a Message joined (thinking and tool blocks skipped)."""
    parts = [b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text"]
    return "\n\n".join(p for p in parts if p)


class AtomicWriter:
    """Writes files by temp file + rename (a killed process never leaves a half file).

    Durability without an fsync per file: callers collect a group of written paths and call sync()
    once before recording them; a crash before the record means the file is written again next run.
    """

    def __init__(self) -> None:
        self._dirs: set[Path] = set()

    def write(self, path: Path, text: str) -> str:
        """Write text atomically; return its sha256."""
        data = text.encode("utf-8")
        parent = path.parent
        if parent not in self._dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(parent)
        tmp = parent / f".{path.name}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    @staticmethod
    def sync() -> None:
        """Flush written files to disk once for a whole group (cheaper than an fsync per file)."""
        os.sync()


def remove_stale_temps(folders: Iterable[str | Path]) -> int:
    """Remove temp files a killed writer left in the given output folders; return how many."""
    removed = 0
    for folder in {Path(f) for f in folders}:
        if not folder.is_dir():
            continue
        for entry in folder.glob(".*.tmp-*"):
            try:
                entry.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed
