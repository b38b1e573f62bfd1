"""Recorded results files served to a batch whose custom_ids match the file's, or (`--replay-any`) byte for
byte to every batch: unknown custom_ids, blank lines, CRLF and a truncated last line reach the client as
they are in the file.

A client may tag a batch's custom_ids ("<id>-<tag>", the same tag on every one): a file recorded with the
untagged ids is served to that batch too, each line carrying the id the batch was sent with (what the
real API would answer); a `--replay-any` file gets the tag on the ids that name the batch's requests, and
is otherwise served byte for byte."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tegbatchd.errors import InputError

KNOWN = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class ReplaySource:
    path: str
    custom_ids: frozenset[str]
    counts: dict[str, int]
    verbatim: bool = False  # --replay-any: served byte for byte, whatever the batch's custom_ids


def load_replay(path: str, *, verbatim: bool = False) -> ReplaySource:
    """Read a results JSONL file's custom_ids and result types. Raise InputError if it is unreadable.

    With verbatim (`--replay-any`), lines that are not result objects are allowed (and not counted).
    """
    ids: set[str] = set()
    counts = dict.fromkeys(("processing", *KNOWN), 0)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):  # noqa: B007 (named in the error)
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    custom_id, kind = line["custom_id"], line.get("result", {}).get("type")
                except (ValueError, KeyError, TypeError, AttributeError):
                    if verbatim:
                        continue
                    raise
                ids.add(custom_id)
                counts[kind if kind in KNOWN else "errored"] += 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        where = f"line {number}" if "number" in locals() else "file"
        raise InputError(f"cannot replay {path} ({where}): {exc}") from exc
    return ReplaySource(str(Path(path).resolve()), frozenset(ids), counts, verbatim)


def common_tag(custom_ids: Sequence[str]) -> str | None:
    """The tag every custom_id of a batch ends with ("<id>-<tag>"), else None."""
    if not custom_ids or "-" not in custom_ids[0]:
        return None
    suffix = "-" + custom_ids[0].rsplit("-", 1)[1]
    if len(suffix) < 2 or any(len(c) <= len(suffix) or not c.endswith(suffix) for c in custom_ids):
        return None
    return suffix[1:]


def replay_tag(source: ReplaySource, custom_ids: Sequence[str]) -> str | None:
    """The tag to add to the source's custom_ids for this batch: None when they are the batch's own."""
    if not source.verbatim and source.custom_ids == set(custom_ids):
        return None
    return common_tag(custom_ids)


def match_replay(sources: Sequence[ReplaySource], custom_ids: Sequence[str]) -> ReplaySource | None:
    """Return the source whose custom_ids equal `custom_ids` as a set (or with their common tag taken
    off), else a `--replay-any` one, if any."""
    wanted: set[str] | None = None
    untagged: set[str] | None = None
    for source in sources:
        if source.verbatim or len(source.custom_ids) != len(custom_ids):
            continue
        wanted = wanted if wanted is not None else set(custom_ids)
        if source.custom_ids == wanted:
            return source
        if untagged is None:
            tag = common_tag(custom_ids)
            untagged = {c[:-len(tag) - 1] for c in custom_ids} if tag else set()
        if source.custom_ids == untagged:
            return source
    return next((source for source in sources if source.verbatim), None)


def tagged_lines(lines: Iterator[bytes], tag: str) -> Iterator[bytes]:
    """The replayed lines with each custom_id as the batch sent it ("<id>-<tag>")."""
    for line in lines:
        obj = json.loads(line)
        obj["custom_id"] = f"{obj['custom_id']}-{tag}"
        yield json.dumps(obj, ensure_ascii=False).encode("utf-8") + (b"\n" if line.endswith(b"\n") else b"")


_ID_FIELD = re.compile(rb'("custom_id"\s*:\s*")([A-Za-z0-9_-]{1,64})(")')


def tagged_verbatim(lines: Iterator[bytes], tag: str, custom_ids: Sequence[str]) -> Iterator[bytes]:
    """`--replay-any` lines byte for byte, except that a custom_id naming one of the batch's requests
    without its tag gets the tag (what the real API would answer for the ids sent); others stay as they are."""
    readable = {c[:-len(tag) - 1].encode() for c in custom_ids}
    suffix = b"-" + tag.encode()

    def add(match: re.Match[bytes]) -> bytes:
        found = match.group(2)
        return match.group(1) + found + suffix + match.group(3) if found in readable else match.group(0)

    for line in lines:
        yield _ID_FIELD.sub(add, line, count=1)


def iter_replay_lines(path: str, *, verbatim: bool = False) -> Iterator[bytes]:
    """Yield the file's lines, skipping blank ones; CRLF becomes LF (the SDK needs LF only).

    With verbatim, yield every line exactly as stored (blank lines, CRLF, a last line without LF).
    """
    with open(path, "rb") as handle:
        if verbatim:
            yield from handle
            return
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line + (b"\n" if raw.endswith(b"\n") else b"")
