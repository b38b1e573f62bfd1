"""Injected misbehaviour: faulted calls, unclear creates, cut results streams, spend limits, and the
eventual consistency of new batches (404 on retrieve, missing from list) seen on the real API."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tegbatchd.emulator.ids import fraction
from tegbatchd.emulator.options import Options


@dataclass(frozen=True)
class Fault:
    status: int
    error_type: str
    message: str
    error_code: str | None = None  # error.details.error_code
    retry_after: bool = True  # whether the answer carries the retry-after header


# Faulted calls cycle through these, so every kind shows up.
FAULTS = (
    Fault(429, "rate_limit_error", "Number of requests has exceeded your rate limit (emulated)."),
    Fault(500, "api_error", "Internal server error (emulated)."),
    Fault(529, "overloaded_error", "Overloaded (emulated)."),
)


# --spend-limit: a limit the workspace set (400), or the tier's monthly spend cap (429 with an error code
# and no retry-after): the project doc api-facts-2026-12.md, "Billing".
SPEND_LIMITS = {
    "workspace": Fault(400, "invalid_request_error",
                       "You have reached your specified workspace API usage limits. You will regain access "
                       "when the limit resets or after you raise it in the Console (emulated).",
                       retry_after=False),
    "tier": Fault(429, "rate_limit_error",
                  "You have reached your organization's monthly spend limit for its usage tier (emulated).",
                  error_code="enforced_spend_limit_reached", retry_after=False),
}


class FaultPlan:
    """Decides, deterministically from the seed and call order, which calls misbehave."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self._lock = threading.Lock()
        self._unclear_left = opts.unclear_create_count if opts.unclear_create else 0
        self._downloads = 0
        self.reset()

    def reset(self) -> None:
        """Restart the call sequence (with `reset-stats`), so a scenario replays the same faults."""
        with self._lock:
            self._calls = 0
            self._faults = 0

    def fault_for_call(self) -> Fault | None:
        """Return the fault this API call must answer with, or None to serve it."""
        if not self.opts.fault_rate:
            return None
        with self._lock:
            number = self._calls
            self._calls += 1
            if fraction(self.opts.seed, "fault", number) >= self.opts.fault_rate:
                return None
            fault = FAULTS[self._faults % len(FAULTS)]
            self._faults += 1
            return fault

    def spend_limit(self) -> Fault | None:
        """Return the spend-limit refusal every create gets (--spend-limit), or None."""
        return SPEND_LIMITS.get(self.opts.spend_limit or "")

    def hides_new_batch(self, created_at: float, now: float) -> bool:
        """Whether a retrieve of a batch created at `created_at` answers 404 (--retrieve-404-seconds)."""
        return now - created_at < self.opts.retrieve_404_seconds

    def unclear_create(self) -> str | None:
        """Return "drop" or "stall" while unclear creates remain, else None (consumes one)."""
        with self._lock:
            if self._unclear_left <= 0:
                return None
            self._unclear_left -= 1
            return self.opts.unclear_create

    def results_cut_after(self) -> int | None:
        """Return after how many lines this results download is cut, or None to send it whole."""
        if self.opts.drop_results_after is None:
            return None
        with self._lock:
            self._downloads += 1
            times = self.opts.drop_results_times
            if times is not None and self._downloads > times:
                return None
            return self.opts.drop_results_after
