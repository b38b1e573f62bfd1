"""Delivering queued notifications from a one-shot command (poll --once, demo)."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def deliver_now(ctx) -> int:
    """Send the queued notifications once; undelivered ones stay queued for the next poll."""
    try:
        from tegbatchd.actions.deliver import deliver_pending
        from tegbatchd.notify import make_notifier
    except ImportError:  # notifications not built into this installation
        return 0
    return asyncio.run(deliver_pending(ctx, make_notifier(ctx.config)))
