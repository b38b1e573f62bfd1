"""Job ids: sortable by time, short enough to type, unique enough for one person's laptop."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_job_id() -> str:
    return f"job_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(2)}"
