"""Resubmitting failed attempts: by itself (transient failures, from the loop) or on request (`retry`).

A resubmission is one transaction (the new attempts, the old ones marked retried, their stage submitted
again, later stages reopened, the job active): a kill before it leaves nothing recorded (the next run
selects the same failures), a kill after it leaves open intents that are sent (or reconciled) next. A
success is never selected, so it is never sent again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tegbatchd.engine.states import IntentState, failure_kind
from tegbatchd.store import PlannedIntent

if TYPE_CHECKING:
    from tegbatchd.submission import Item

MAX_TOKENS_CAP = 128_000


@dataclass
class RetryPlan:
    chosen: list[dict] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)   # reason → count (need --all-errors)
    unsendable: int = 0                                      # their archived lines are gone


def _kind(row: dict) -> str:
    return failure_kind(row["outcome"], row["error_type"], row["error_message"], user_canceled=bool(row["user_canceled"]))


def auto_candidates(failures: list[dict], max_attempts: int) -> list[dict]:
    """Failures poll resubmits by itself: transient, below the attempt limit (the same rule as the view),
    and archived here (an imported batch's requests never were: they cannot be resent)."""
    return [r for r in failures if _kind(r) == "transient" and r["attempt"] < max_attempts and r.get("archive", "x")]


def choose(store, job_id: str, *, all_errors: bool = False, truncated: bool = False) -> RetryPlan:
    """What `tegbatchd retry JOB` resends: every failed output of every stage whose failure may heal
    (transient, archived, canceled, billing...), all of them with all_errors, and the outputs cut at
    max_tokens with truncated."""
    plan = RetryPlan()
    for row in store.latest_failures(job_id):
        if all_errors or _kind(row) != "permanent":
            plan.chosen.append(row)
        else:
            reason = row["error_type"] or row["outcome"]
            plan.left_out[reason] = plan.left_out.get(reason, 0) + 1
    if truncated:
        plan.chosen += [{**r, "raise_max_tokens": True} for r in store.truncated_outputs(job_id)]
    return plan


def _lines(archive: str, sent_ids: set[str]) -> dict[str, bytes]:
    """sent custom_id → its archived line, for the given ones."""
    out: dict[str, bytes] = {}
    with open(archive, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            cid = json.loads(line).get("custom_id")
            if cid in sent_ids:
                out[cid] = line.rstrip(b"\r\n")
    return out


def _raised(line: bytes, factor: float) -> tuple[bytes, int | None]:
    obj = json.loads(line)
    params = obj["params"]
    old = params.get("max_tokens") if isinstance(params.get("max_tokens"), int) else 1024
    params["max_tokens"] = min(MAX_TOKENS_CAP, max(old + 1, int(old * factor)))
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        thinking["budget_tokens"] = min(thinking["budget_tokens"], params["max_tokens"] - 1)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), params["max_tokens"]


def resubmit(ctx, job: dict, rows: list[dict], *, intent_state: IntentState = IntentState.OPEN) -> tuple[list[int], int]:
    """Archive and record new attempts for rows (latest failed or truncated attempts): one transaction.

    Return (intent ids, rows that cannot be sent because their archived line is gone)."""

    from tegbatchd.paths import ensure_dir
    from tegbatchd.submission import archive_group, archived_item

    store = ctx.store
    factor = float(ctx.config["retry"]["truncated_factor"])
    by_archive: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_archive[row["archive"]].append(row)
    by_stage: dict[int, list[tuple[Item, dict]]] = defaultdict(list)
    unsendable = 0
    for archive, group in by_archive.items():
        try:
            lines = _lines(archive, {r["sent_id"] for r in group})
        except (OSError, ValueError):
            lines = {}
        for row in group:
            line = lines.get(row["sent_id"])
            if line is None:
                unsendable += 1
                continue
            max_tokens, written = row["max_tokens"], row["sent_id"]
            if row.get("raise_max_tokens"):
                line, max_tokens = _raised(line, factor)
            item = archived_item(line, written, row["custom_id"], row["output_path"], row["model"], max_tokens)
            by_stage[row["stage_id"]].append((item, row))
    if not by_stage:
        return [], unsendable
    archive_dir = ensure_dir(ctx.paths.archive_dir)
    planned: dict[int, list[PlannedIntent]] = {}
    limits = ctx.config["batch_limits"]
    for stage_id, entries in by_stage.items():
        planned[stage_id] = []
        for part in archive_group(archive_dir, f"{job['id']}-retry", [e[0] for e in entries], limits):
            chunk = entries[part.start:part.stop]  # a new intent: a new tag, so new sent ids
            planned[stage_id].append(PlannedIntent(
                part.archive, part.byte_size,
                rows=[(r["custom_id"], r["output_path"], r["model"], i.max_tokens, r["attempt"] + 1) for i, r in chunk],
                replaces=[(r["id"], r["custom_id"]) for _, r in chunk], tag=part.tag, sent_ids=part.sent_ids))
    ids = store.record_retry(job["id"], planned, intent_state=intent_state)
    return ids, unsendable
