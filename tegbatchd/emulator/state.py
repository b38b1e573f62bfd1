"""The batches the emulator holds, their lifecycle on the emulated clock, and list paging.

Time-driven changes (end of processing, expiry, end of a cancel, archiving) are applied lazily
whenever a batch is looked at, so there is no background worker to race with.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, replace
from typing import Any

from tegbatchd.emulator.answers import RequestRecord
from tegbatchd.emulator.cache import PromptCache
from tegbatchd.emulator.clock import Clock
from tegbatchd.emulator.ids import derived_id, random_id
from tegbatchd.emulator.options import Options
from tegbatchd.emulator.outcomes import CANCELED, EXPIRED, NORMAL, count_outcomes, decide_outcomes
from tegbatchd.emulator.replay import ReplaySource

STATE_VERSION = 1


class NotFound(Exception):
    """No such batch (never existed, or deleted)."""


class InvalidState(Exception):
    """The batch is not in a state that allows the operation (answered as 400)."""


@dataclass
class Batch:
    id: str
    seq: int
    created_at: float
    expires_at: float
    due_at: float  # when processing ends by itself
    due_mode: str  # NORMAL, or EXPIRED when processing outlasts the expiry window
    requests: list[RequestRecord]
    replay: ReplaySource | None = None
    cancel_at: float | None = None
    ended_at: float | None = None
    end_mode: str | None = None
    outcomes: str | None = None
    counts: dict[str, int] | None = None
    archived_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


class BatchStore:
    """Thread-safe holder of all batches; every public method applies due lifecycle changes first."""

    def __init__(self, opts: Options, clock: Clock, replays: tuple[ReplaySource, ...] = ()) -> None:
        self.opts = opts
        self.clock = clock
        self.replays = {source.path: source for source in replays}
        self._lock = threading.RLock()
        self._batches: dict[str, Batch] = {}
        self._seqs: list[int] = []  # live batches, ascending insertion sequence
        self._ids: list[str] = []  # same order as _seqs
        self._deleted: dict[str, int] = {}  # deleted id -> seq, so cursors on them still work
        self._next_seq = 0
        self._pending: set[str] = set()  # batches not ended yet
        self.cache = PromptCache()
        self.dirty = False

    # -- lifecycle -------------------------------------------------------------------------

    def _finalize(self, batch: Batch, at: float, mode: str) -> None:
        self._settle_before(at)
        batch.ended_at = at
        batch.end_mode = mode
        self._pending.discard(batch.id)
        if batch.replay is not None:
            batch.counts = dict(batch.replay.counts)
        else:
            batch.outcomes = decide_outcomes(batch.id, batch.requests, mode, self.opts)
            batch.counts = count_outcomes(batch.outcomes)
            if self.opts.cache_model == "realistic":
                self._use_cache(batch, at)
        self.dirty = True

    def _use_cache(self, batch: Batch, at: float) -> None:
        """Decide each finished request's cache write or read, all looked up before any writes."""
        outcomes = batch.outcomes or ""
        indexes = [i for i, record in enumerate(batch.requests) if record.cache_key and outcomes[i] in "st"]
        for index, record in zip(indexes, self.cache.process([batch.requests[i] for i in indexes], at),
                                 strict=True):
            batch.requests[index] = record

    def _end_of(self, batch: Batch) -> tuple[float, str]:
        end_at, mode = batch.due_at, batch.due_mode
        if batch.cancel_at is not None and batch.cancel_at + self.opts.cancel_seconds < end_at:
            end_at, mode = batch.cancel_at + self.opts.cancel_seconds, CANCELED
        return end_at, mode

    def _settle_before(self, at: float) -> None:
        """End, in time order, every other batch due before `at` (the prompt cache sees them in order)."""
        due = sorted((end, batch_id) for batch_id in self._pending
                     for end, _ in [self._end_of(self._batches[batch_id])] if end < at)
        for _, batch_id in due:
            batch = self._batches[batch_id]
            if batch.ended_at is None:
                self._finalize(batch, *self._end_of(batch))

    def _refresh(self, batch: Batch) -> Batch:
        now = self.clock.now()
        if batch.ended_at is None:
            end_at, mode = self._end_of(batch)
            if now >= end_at:
                self._finalize(batch, end_at, mode)
        if batch.ended_at is not None and batch.archived_at is None:
            archive_at = max(batch.created_at + self.opts.retention_seconds, batch.ended_at)
            if now >= archive_at:
                batch.archived_at = archive_at
                self.dirty = True
        return batch

    def _live(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise NotFound(batch_id)
        return self._refresh(batch)

    # -- operations --------------------------------------------------------------------------

    def create(self, records: list[RequestRecord], replay: ReplaySource | None = None) -> Batch:
        """Store a new batch of already-validated request records; return a copy as created."""
        opts = self.opts
        with self._lock:
            now = self.clock.now()
            expires_at = now + opts.expiry_seconds
            if opts.process_seconds > opts.expiry_seconds:
                due_at, due_mode = expires_at, EXPIRED
            else:
                due_at, due_mode = now + opts.process_seconds, NORMAL
            batch_id = (derived_id("msgbatch_", opts.seed, self._next_seq) if opts.seeded_ids
                        else random_id("msgbatch_"))
            batch = Batch(id=batch_id, seq=self._next_seq, created_at=now, expires_at=expires_at,
                          due_at=due_at, due_mode=due_mode, requests=records, replay=replay)
            self._next_seq += 1
            self._add(batch)
            return replace(batch)  # as it was at creation, even when it ends at once

    def _add(self, batch: Batch) -> None:
        self._batches[batch.id] = batch
        index = bisect.bisect_left(self._seqs, batch.seq)
        self._seqs.insert(index, batch.seq)
        self._ids.insert(index, batch.id)
        if batch.ended_at is None:
            self._pending.add(batch.id)
        self.dirty = True

    def get(self, batch_id: str) -> Batch:
        """Return the batch. Raise NotFound."""
        with self._lock:
            return self._live(batch_id)

    def cancel(self, batch_id: str) -> Batch:
        """Start canceling (a repeat while canceling changes nothing). Raise NotFound, InvalidState."""
        with self._lock:
            batch = self._live(batch_id)
            if batch.ended:
                raise InvalidState(f"Batch {batch_id} has already ended and can no longer be canceled.")
            if batch.cancel_at is None:
                batch.cancel_at = self.clock.now()
                self.dirty = True
                self._refresh(batch)
            return batch

    def finish(self, batch_id: str) -> Batch:
        """End the batch now (as canceled if a cancel is under way). Raise NotFound."""
        with self._lock:
            batch = self._live(batch_id)
            if not batch.ended:
                self._finalize(batch, self.clock.now(), CANCELED if batch.cancel_at is not None else NORMAL)
            return batch

    def created_at(self, batch_id: str) -> float:
        """Return when the batch was created, without applying lifecycle changes. Raise NotFound."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                raise NotFound(batch_id)
            return batch.created_at

    def delete(self, batch_id: str) -> None:
        """Forget an ended batch. Raise NotFound, InvalidState."""
        with self._lock:
            batch = self._live(batch_id)
            if not batch.ended:
                raise InvalidState(f"Batch {batch_id} is still being processed and cannot be deleted; "
                                   "cancel it first and wait until it has ended.")
            index = bisect.bisect_left(self._seqs, batch.seq)
            del self._seqs[index], self._ids[index]
            del self._batches[batch_id]
            self._deleted[batch_id] = batch.seq
            self.dirty = True

    def page(self, limit: int, after_id: str | None, before_id: str | None, lag_seconds: float = 0.0
             ) -> tuple[list[Batch], bool]:
        """Return (batches newest first, has_more in the direction asked). Raise NotFound for a bad cursor.

        Batches created less than `lag_seconds` ago are left out (the list-lag fault).
        """
        with self._lock:
            lo, hi = 0, len(self._seqs)
            if lag_seconds > 0:
                newest = self.clock.now() - lag_seconds
                while hi > 0 and self._batches[self._ids[hi - 1]].created_at > newest:
                    hi -= 1
            visible = hi
            if after_id is not None:  # older than the cursor
                hi = bisect.bisect_left(self._seqs, self._cursor_seq(after_id))
            if before_id is not None:  # newer than the cursor
                lo = bisect.bisect_right(self._seqs, self._cursor_seq(before_id))
            hi = min(hi, visible)
            if hi < lo:
                hi = lo
            if before_id is not None and after_id is None:
                start, stop = lo, min(hi, lo + limit)
                has_more = stop < hi
            else:
                start, stop = max(lo, hi - limit), hi
                has_more = start > lo
            ids = self._ids[start:stop]
            return [self._refresh(self._batches[i]) for i in reversed(ids)], has_more

    def _cursor_seq(self, batch_id: str) -> int:
        if batch_id in self._batches:
            return self._batches[batch_id].seq
        if batch_id in self._deleted:
            return self._deleted[batch_id]
        raise NotFound(batch_id)

    def count(self) -> int:
        with self._lock:
            return len(self._batches)

    # -- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return everything needed to restore the store, as JSON-ready data; clears `dirty`."""
        with self._lock:
            self.dirty = False
            return {
                "version": STATE_VERSION,
                "next_seq": self._next_seq,
                "clock_offset": self.clock.offset,
                "deleted": dict(self._deleted),
                "prompt_cache": self.cache.snapshot(),
                "batches": [_batch_data(self._batches[i]) for i in self._ids],
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a snapshot taken by `snapshot` (replaces nothing already present)."""
        with self._lock:
            self._next_seq = max(self._next_seq, int(data.get("next_seq", 0)))
            self._deleted.update(data.get("deleted", {}))
            self.cache.restore(data.get("prompt_cache", {}))
            self.clock.advance(float(data.get("clock_offset", 0.0)) - self.clock.offset)
            for item in data.get("batches", []):
                replay = item.pop("replay", None)
                records = [RequestRecord(*row) for row in item.pop("requests")]
                batch = Batch(**item, requests=records, replay=self.replays.get(replay) if replay else None)
                if replay and batch.replay is None:
                    batch.replay = ReplaySource(replay, frozenset(r.custom_id for r in records),
                                                batch.counts or {})
                self._add(batch)
            self.dirty = False


def _batch_data(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id, "seq": batch.seq, "created_at": batch.created_at, "expires_at": batch.expires_at,
        "due_at": batch.due_at, "due_mode": batch.due_mode, "cancel_at": batch.cancel_at,
        "ended_at": batch.ended_at, "end_mode": batch.end_mode, "outcomes": batch.outcomes,
        "counts": batch.counts, "archived_at": batch.archived_at,
        "replay": batch.replay.path if batch.replay else None,
        "requests": [list(record) for record in batch.requests],
    }
