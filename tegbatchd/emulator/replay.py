"""Recorded results files served verbatim to a batch whose custom_ids match the file's."""

from __future__ import annotations

import json
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


def load_replay(path: str) -> ReplaySource:
    """Read a results JSONL file's custom_ids and result types. Raise InputError if it is unreadable."""
    ids: set[str] = set()
    counts = dict.fromkeys(("processing", *KNOWN), 0)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):  # noqa: B007 (named in the error)
                if not raw.strip():
                    continue
                line = json.loads(raw)
                ids.add(line["custom_id"])
                kind = line.get("result", {}).get("type")
                counts[kind if kind in KNOWN else "errored"] += 1
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        where = f"line {number}" if "number" in locals() else "file"
        raise InputError(f"cannot replay {path} ({where}): {exc}") from exc
    return ReplaySource(str(Path(path).resolve()), frozenset(ids), counts)


def match_replay(sources: Sequence[ReplaySource], custom_ids: Sequence[str]) -> ReplaySource | None:
    """Return the source whose custom_ids equal `custom_ids` as a set, if any."""
    wanted: set[str] | None = None
    for source in sources:
        if len(source.custom_ids) != len(custom_ids):
            continue
        wanted = wanted if wanted is not None else set(custom_ids)
        if source.custom_ids == wanted:
            return source
    return None


def iter_replay_lines(path: str) -> Iterator[bytes]:
    """Yield the file's lines verbatim, skipping blank ones; CRLF becomes LF (the SDK needs LF only)."""
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line + (b"\n" if raw.endswith(b"\n") else b"")
