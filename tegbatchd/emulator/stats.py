"""Counters served at `GET /_emulator/stats`: every API call by endpoint, batches created, faults; and at
`GET /_emulator/stats/received` how many created batches carried each custom_id."""

from __future__ import annotations

import threading
from typing import Any

ENDPOINTS = ("create", "retrieve", "list", "cancel", "delete", "results", "messages", "models", "model")


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls = dict.fromkeys(ENDPOINTS, 0)
            self._batches_created = 0
            self._faults_injected = 0
            self._received: dict[str, int] = {}

    def call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def batch_created(self, custom_ids=()) -> None:
        with self._lock:
            self._batches_created += 1
            for cid in custom_ids:
                self._received[cid] = self._received.get(cid, 0) + 1

    def fault_injected(self) -> None:
        with self._lock:
            self._faults_injected += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": dict(self._calls), "batches_created": self._batches_created,
                    "faults_injected": self._faults_injected}

    def received(self) -> dict[str, int]:
        """custom_id → how many created batches carried it (a request sent twice shows 2)."""
        with self._lock:
            return dict(self._received)
