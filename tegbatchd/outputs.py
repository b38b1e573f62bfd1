"""Output files: paths decided at submit time inside the data root, atomic writes, grouped durability."""

from __future__ import annotations

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
    return Path(OutputResolver(data_root).resolve(relative))


class OutputResolver:
    """resolve_inside for many outputs of one data root: each folder is resolved and checked once,
    each file costs one lstat (150,000 outputs in a few folders pay no Path.resolve each)."""

    def __init__(self, data_root: Path):
        self.root = os.path.realpath(data_root)
        self._prefix = self.root.rstrip("/") + "/"
        self._folders: dict[str, str | InputError] = {}

    def _inside(self, full: str) -> bool:
        return full == self.root or full.startswith(self._prefix)

    def _folder(self, folder: str, relative: str) -> str:
        """The resolved absolute folder for a relative folder, or InputError (cached either way)."""
        found = self._folders.get(folder)
        if found is None:
            try:
                found = self._check_folder(folder, relative)
            except InputError as exc:
                found = exc
            self._folders[folder] = found
        if isinstance(found, InputError):
            raise InputError(found.message.replace("{relative}", repr(relative)), next_step=found.next_step)
        return found

    def _check_folder(self, folder: str, relative: str) -> str:
        full = os.path.realpath(os.path.join(self.root, folder)) if folder else self.root
        if not self._inside(full):
            raise InputError(f"output path {{relative}} resolves outside the data root {self.root}",
                             next_step="give a path inside the data root")
        try:
            blocker = _file_in_the_way(full)
        except OSError as exc:  # e.g. a folder name too long for the file system
            raise InputError(f"output path {{relative}} cannot be used ({exc.strerror})",
                             next_step="shorten the template") from None
        if blocker:  # found now, before paying for a batch whose answers could never be written
            raise InputError(f"output path {{relative}} cannot be written: {blocker} is a file, not a folder",
                             next_step="move that file away, or choose another --output or data root")
        return full

    def resolve(self, relative: str) -> str:
        """The absolute output path (a str) of `relative`, or InputError (see resolve_inside)."""
        if not relative or relative.endswith(("/", "\\")):
            raise InputError(f"output path {relative!r} names no file", next_step="end the template with a file name")
        if "\x00" in relative:
            raise InputError("output path contains a NUL byte")
        if relative.startswith(("/", "~")):
            raise InputError(f"output path {relative!r} is absolute",
                             next_step="give a path relative to the data root, e.g. commentary/misc/{custom_id}.md")
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise InputError(f"output path {relative!r} leaves the data root (it contains ..)",
                             next_step="give a path inside the data root")
        if not parts:
            raise InputError(f"output path {relative!r} is a folder", next_step="end the template with a file name")
        name = parts.pop()
        if len(name.encode()) > MAX_NAME_BYTES:
            raise InputError(f"output path {relative!r} has a file name over {MAX_NAME_BYTES} bytes",
                             next_step="shorten the template or the custom_ids")
        folder = self._folder("/".join(parts), relative)
        full = f"{folder}/{name}" if folder != "/" else f"/{name}"
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return full
        except OSError as exc:
            raise InputError(f"output path {relative!r} cannot be used ({exc.strerror})",
                             next_step="shorten the template") from None
        if stat.S_ISLNK(st.st_mode):  # a symlinked file: where it points must be inside too
            real = os.path.realpath(full)
            if not self._inside(real) or real == self.root:
                raise InputError(f"output path {relative!r} resolves outside the data root {self.root}",
                                 next_step="give a path inside the data root")
            full = real
            try:
                st = os.stat(full)
            except OSError:
                return full
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"output path {relative!r} is a folder", next_step="end the template with a file name")
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
    if type(content) is list and len(content) == 1:  # the usual answer: one text block
        block = content[0]
        if type(block) is dict and block.get("type") == "text":
            text = block.get("text")
            return text if isinstance(text, str) else ""
        return ""
    blocks = content if isinstance(content, list) else []
    parts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


class AtomicWriter:
    """The one writer (tegbatchd.writer) for callers that trust each file's own folder: write() returns the
    sha256; sync() once per group before recording it."""

    def write(self, path: str | Path, text: str) -> str:
        from tegbatchd.writer import write_file

        return write_file(path, text).sha256

    @staticmethod
    def sync() -> None:
        from tegbatchd.writer import sync_everything

        sync_everything()


def remove_stale_temps(folders: Iterable[str | Path]) -> int:
    """Remove temp files a killed writer left in the given output folders; return how many (see writer)."""
    from tegbatchd.writer import remove_stale_temps as sweep

    return sweep(folders)
