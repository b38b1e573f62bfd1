"""Delivering queued notifications from a one-shot command (poll --once, demo)."""

from __future__ import annotations

import asyncio


def deliver_now(ctx, notifier=None, *, lock_wait: float = 10.0) -> int:
    """Send the queued notifications once; undelivered ones stay queued for the next poll."""
    from tegbatchd.actions.deliver import deliver_pending
    from tegbatchd.notify import close_notifier, make_notifier

    async def run() -> int:
        target = notifier or make_notifier(ctx.config)
        try:
            return await deliver_pending(ctx, target, lock_wait=lock_wait)
        finally:
            await close_notifier(target)

    return asyncio.run(run())
