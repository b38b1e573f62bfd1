"""Whether a batch reconcile adopted is ours: its results carry exactly its intent's custom_ids.

Reconcile matches a lost create with a batch on the API by request count and time, which another process
on the same key can share. Every custom_id an intent sends carries its tag, so the results tell: an adopted
batch is read once for its ids before anything of it is written; one unknown, repeated or missing id and it
is foreign (nothing written, the intent sent again). A batch our own create returned needs no check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tegbatchd import api as api_mod

COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class Verdict:
    ours: bool | None   # None: not known yet (the results stream was cut)
    reason: str = ""


def _custom_id(line: bytes) -> str | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    cid = obj.get("custom_id") if isinstance(obj, dict) else None
    return cid if isinstance(cid, str) else None


def decide(expected: set[str], total: int, custom_ids: Iterable[str | None]) -> Verdict:
    """The verdict on a batch of `total` requests whose results carry `custom_ids` (None: a line without
    one), for an intent that sent `expected`. Cheap first: a count that differs, or the first id that is
    not the intent's, ends it without reading further."""
    if total != len(expected):
        return Verdict(False, f"it holds {total} request(s), the intent {len(expected)}")
    seen: set[str] = set()
    for cid in custom_ids:
        if cid is None:
            continue
        if cid not in expected:
            return Verdict(False, f"its results carry custom_id {cid[:80]!r}, which this intent never sent")
        if cid in seen:
            return Verdict(False, f"its results carry custom_id {cid[:80]!r} twice")
        seen.add(cid)
    if len(seen) != len(expected):
        return Verdict(False, f"{len(expected) - len(seen)} of the intent's custom_ids have no result in it")
    return Verdict(True)


def check_adopted(store, client, batch: dict) -> Verdict:
    """Read an adopted, ended batch's results for their custom_ids only (nothing written) and decide."""
    total = sum(int(batch.get(k) or 0) for k in COUNTS)
    expected = store.sent_ids_of_intent(batch["intent_id"])
    if total != len(expected):
        return decide(expected, total, ())
    lines = client.result_lines(batch["id"])
    try:
        return decide(expected, total, (_custom_id(line) for line in lines))
    except api_mod.StreamCut as exc:
        return Verdict(None, str(exc))
    finally:
        close = getattr(lines, "close", None)
        if close:
            close()  # a verdict before the end: the rest of the stream is not read
