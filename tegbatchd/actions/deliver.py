"""Deliver the notices the store holds but the desktop has not confirmed yet."""

from __future__ import annotations

import logging

from tegbatchd.notify import Notice, Notifier

log = logging.getLogger(__name__)

# After this many failures in a row the notification service is taken to be down until the next poll.
MAX_FAILURES_IN_A_ROW = 2


def _notice(row: dict) -> Notice:
    return Notice(key=row["key"], title=row["title"], body=row["body"], open_path=row.get("open_path"),
                  urgency=row.get("urgency") or "normal")


async def deliver_pending(ctx, notifier: Notifier) -> int:
    """Given a context whose store has pending notices, send them; return how many were delivered.

    A notice is marked delivered only when send() confirms it; a failed one stays pending for the next
    poll. Two failures in a row end the round (the rest wait, too).
    """
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
