"""Pacing for `--now`: a tokens-per-minute budget shared by concurrent requests, and retry back-off.

The budget is a bucket of `tokens_per_minute` estimated tokens refilled continuously (tokens_per_minute/60
per second), the way the API's own rate limiter works: a job within the budget never waits, and a job
slightly over it waits only for the tokens it lacks, not for a whole minute to pass.
"""

from __future__ import annotations

import random
import threading
import time

from tegbatchd.backoff import backoff
from tegbatchd.costs import CHARS_PER_TOKEN

BACKOFF_FIRST = 0.5   # seconds before the first retry; doubled for each further one
BACKOFF_CAP = 8.0     # no retry waits longer than this
POLL_STOP = 0.5       # how often a waiting request looks whether the job was stopped


def estimate_tokens(json_bytes: int, max_tokens: int | None) -> int:
    """The tokens a request may use: its JSON size / 3.5 for the input plus all of max_tokens."""
    return int(json_bytes / CHARS_PER_TOKEN) + (max_tokens or 0)


def backoff_delay(retry: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (1, 2, ...): 0.5 s doubling up to 8 s, half of it jitter."""
    return backoff(retry, first=BACKOFF_FIRST, cap=BACKOFF_CAP, jitter=True, rng=rng)


class TokenBudget:
    """Lets requests start, in arrival order, while their estimated tokens fit in the budget.

    A request larger than the whole budget waits for a full bucket and then goes alone (the bucket goes
    into debt, so the next one waits until it is repaid).
    """

    def __init__(self, tokens_per_minute: int, *, clock=time.monotonic):
        self.capacity = float(tokens_per_minute)
        self.rate = tokens_per_minute / 60.0
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0

    def take(self, tokens: int) -> float:
        """Take `tokens` and return 0 if they fit now; else take nothing and return the seconds to wait."""
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        need = min(float(tokens), self.capacity)
        if self._level >= need:
            self._level -= tokens
            return 0.0
        return (need - self._level) / self.rate

    def acquire(self, tokens: int, stop: threading.Event) -> float | None:
        """Block until `tokens` fit (first come, first served); return the seconds waited, None if stopped."""
        start = self._clock()
        with self._cond:
            ticket = self._issued
            self._issued += 1
            while not stop.is_set():
                wait = POLL_STOP
                if ticket == self._serving:
                    wait = self.take(tokens)
                    if wait == 0:
                        self._serving += 1
                        self._cond.notify_all()
                        return self._clock() - start
                self._cond.wait(min(wait, POLL_STOP))
            return None
