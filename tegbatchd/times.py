"""Times as a person reads them: the local zone (TZ honoured) with the zone named, or UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def shown_time(stamp: str | None, *, utc: bool = False) -> str:
    """An ISO 8601 stamp (as recorded: UTC) as `2026-12-01 18:09 EST`, or `... UTC` with utc."""
    if not stamp:
        return "-"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if utc:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    time.tzset()  # TZ may have changed since start-up (a test, or a long-lived process)
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or local.strftime("%z"))
