"""Output files: paths decided at submit time inside the data root, atomic writes, grouped durability."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from tegbatchd.errors import InputError

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
ALLOWED_FIELDS = ("custom_id", "index")
MAX_NAME_BYTES = 240  # a file system's 255, less room for the temp file (".NAME.tmp-PID") written beside it


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
    if len(full.name.encode()) > MAX_NAME_BYTES:
        raise InputError(f"output path {relative!r} has a file name over {MAX_NAME_BYTES} bytes",
                         next_step="shorten the template or the custom_ids")
    try:
        is_folder = os.path.isdir(full)
        blocker = _file_in_the_way(str(full.parent))
    except OSError as exc:  # e.g. a folder name too long for the file system
        raise InputError(f"output path {relative!r} cannot be used ({exc.strerror})",
                         next_step="shorten the template") from None
    if is_folder:
        raise InputError(f"output path {relative!r} is a folder", next_step="end the template with a file name")
    if blocker:  # found now, before paying for a batch whose answers could never be written
        raise InputError(f"output path {relative!r} cannot be written: {blocker} is a file, not a folder",
                         next_step="move that file away, or choose another --output or data root")
    return full


def _file_in_the_way(folder: str) -> str | None:
    """The nearest existing path at or above folder, when it is not a folder (one stat when it is)."""
    while True:
        try:
            return None if stat.S_ISDIR(os.stat(folder).st_mode) else folder
        except (FileNotFoundError, NotADirectoryError):
            folder = os.path.dirname(folder)


def message_text(message: dict) -> str:
    """All text blocks of a Message joined (thinking and tool blocks, and anything malformed, skipped)."""
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    parts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


class AtomicWriter:
    """Writes files by temp file + rename (a killed process never leaves a half file).

    Durability without an fsync per file: callers collect a group of written paths and call sync()
    once before recording them; a crash before the record means the file is written again next run.
    """

    def __init__(self) -> None:
        self._dirs: set[str] = set()

    def write(self, path: str | Path, text: str) -> str:
        """Write text atomically; return its sha256. (String paths: 100,000 files pay no pathlib.)"""
        data = text.encode("utf-8")
        parent, name = os.path.split(os.fspath(path))
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    @staticmethod
    def sync() -> None:
        """Flush written files to disk once for a whole group (cheaper than an fsync per file)."""
        os.sync()


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that named this temp file (".NAME.tmp-PID") is still running, other than us."""
    pid = temp_name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folders: Iterable[str | Path]) -> int:
    """Remove temp files a killed writer left in the given output folders; return how many.

    A live writer's temp file (another batch of the same job being retrieved into the same folder) is
    left alone: it is about to be renamed.
    """
    removed = 0
    for folder in {Path(f) for f in folders}:
        if not folder.is_dir():
            continue
        for entry in folder.glob(".*.tmp-*"):
            if _writer_alive(entry.name):
                continue
            try:
                entry.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed
