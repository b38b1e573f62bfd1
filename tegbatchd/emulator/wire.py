"""JSON shapes on the wire: timestamps, the MessageBatch object, error envelopes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from tegbatchd.emulator.state import Batch

ZERO_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def rfc3339(epoch: float | None) -> str | None:
    """Return `2024-08-20T18:37:24.100435Z` for an epoch time (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch_object(batch: Batch, base_url: str) -> dict[str, Any]:
    """Return the `MessageBatch` JSON object; `base_url` makes `results_url` absolute."""
    if batch.ended_at is None:
        counts = dict.fromkeys(ZERO_COUNTS, 0)
        counts["processing"] = len(batch.requests)
        status = "canceling" if batch.cancel_at is not None else "in_progress"
        results_url = None
    else:
        counts = dict(batch.counts or {})
        status = "ended"
        results_url = f"{base_url}/v1/messages/batches/{quote(batch.id, safe='')}/results"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "ended_at": rfc3339(batch.ended_at),
        "cancel_initiated_at": rfc3339(batch.cancel_at),
        "archived_at": rfc3339(batch.archived_at),
        "results_url": results_url,
    }


def error_envelope(error_type: str, message: str, request_id: str | None, error_code: str | None = None
                   ) -> dict[str, Any]:
    """Return `{"type": "error", "error": {...}, "request_id": ...}` (HTTP errors and errored results);
    `error_code` goes to `error.details.error_code`."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": request_id}
