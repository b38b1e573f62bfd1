"""The prompt cache on the emulated clock (the default, `--cache-model realistic`).

An entry exists only once a request that wrote it has finished (a batch that ended, or a /v1/messages
call), and lives for its TTL (5 m or 1 h) from then; a read refreshes it. Requests processed together
(one batch) look the cache up before any of them writes, so they never read each other's writes: the
real results in tests/fixtures/anthropic/results-satire-7.jsonl show 7 writes of one prefix, no read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tegbatchd.emulator.answers import CACHE_1H, CACHE_WRITE, RequestRecord

TTL_SECONDS = {False: 300.0, True: 3600.0}
MAX_ENTRIES = 100_000


class PromptCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expires: dict[str, float] = {}  # cache key -> emulated time the entry lapses

    def process(self, records: Sequence[RequestRecord], at: float) -> list[RequestRecord]:
        """Return `records` with CACHE_WRITE set or cleared as processed together at `at`; then store
        their writes (lookups first, so none reads another's write)."""
        out: list[RequestRecord] = []
        writes: dict[str, float] = {}
        with self._lock:
            for record in records:
                if not record.cache_key:
                    out.append(record)
                    continue
                ttl = TTL_SECONDS[bool(record.flags & CACHE_1H)]
                if self._expires.get(record.cache_key, float("-inf")) > at:
                    self._expires[record.cache_key] = max(self._expires[record.cache_key], at + ttl)
                    out.append(record._replace(flags=record.flags & ~CACHE_WRITE))
                else:
                    writes[record.cache_key] = max(writes.get(record.cache_key, 0.0), at + ttl)
                    out.append(record._replace(flags=record.flags | CACHE_WRITE))
            if len(self._expires) + len(writes) > MAX_ENTRIES:
                self._expires = {k: v for k, v in self._expires.items() if v > at}
            for key, until in writes.items():
                self._expires[key] = max(self._expires.get(key, 0.0), until)
        return out

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._expires)

    def restore(self, data: dict[str, float]) -> None:
        with self._lock:
            self._expires.update({str(k): float(v) for k, v in data.items()})
