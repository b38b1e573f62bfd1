"""Deliver the notices the store holds but the desktop has not confirmed yet."""

from __future__ import annotations

import logging

from tegbatchd.locks import file_lock
from tegbatchd.notify import Notice, Notifier

log = logging.getLogger(__name__)

# After this many failures in a row the notification service is taken to be down until the next poll.
MAX_FAILURES_IN_A_ROW = 2


def _notice(row: dict) -> Notice:
    return Notice(key=row["key"], title=row["title"], body=row["body"], open_path=row.get("open_path"),
                  urgency=row.get("urgency") or "normal")


async def deliver_pending(ctx, notifier: Notifier, *, lock_wait: float = 0.0) -> int:
    """Given a context whose store has pending notices, send them; return how many were delivered.

    A notice is marked delivered only when send() confirms it; a failed one stays pending for the next
    poll. Two failures in a row end the round (the rest wait, too). One process delivers at a time (the
    daemon, `poll --once`, `submit --wait` / `--now`): each notice is shown once however many try; a
    process that finds the lock held for lock_wait seconds leaves the notices to the holder.
    """
    with file_lock(ctx.paths.lock_dir / "notices.lock", wait=lock_wait) as mine:
        if not mine:
            log.info("another process is delivering the notices")
            return 0
        return await _deliver_locked(ctx, notifier)


async def _deliver_locked(ctx, notifier: Notifier) -> int:
    pending = ctx.store.pending_notices()
    delivered = failures = 0
    for index, row in enumerate(pending):
        notice = _notice(row)
        try:
            ok = await notifier.send(notice)
        except Exception as exc:  # a notifier must not stop the poll
            log.warning("notice %s: notifier raised %s: %s", notice.key, type(exc).__name__, exc)
            ok = False
        if ok:
            ctx.store.mark_notice_delivered(notice.key)
            delivered += 1
            failures = 0
            continue
        failures += 1
        log.info("notice %s not delivered; it stays pending for the next poll", notice.key)
        if failures >= MAX_FAILURES_IN_A_ROW:
            left = len(pending) - index - 1
            if left:
                log.info("%d more notice(s) left pending: the notification service looks down", left)
            break
    return delivered
