"""The one back-off policy: exponential, capped, with optional jitter (the `--now` sender, the batch
create's retries on 429/5xx, and the daemon after a failed poll all use it)."""

from __future__ import annotations

import random


def backoff(attempt: int, *, first: float, cap: float, jitter: bool = False,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): `first` doubling up to `cap`; with
    jitter, a random point in the upper half (so many clients do not retry in step)."""
    ceiling = min(cap, first * 2 ** min(max(attempt, 1) - 1, 30))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2) if jitter else ceiling
