"""The one back-off policy: exponential, capped, with optional jitter (the `--now` sender, the batch
create's retries on 429/5xx, and the daemon after a failed poll all use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


def backoff(attempt: int, *, first: float, cap: float, jitter: bool = False,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): `first` doubling up to `cap`; with
    jitter, a random point in the upper half (so many clients do not retry in step)."""
    ceiling = min(cap, first * 2 ** min(max(attempt, 1) - 1, 30))
    if not jitter:
        return ceiling
    if rng is None:
        import random  # imported when used: `list` and `paths` never need it

        return ceiling / 2 + random.uniform(0, ceiling / 2)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
