"""Endpoints for tests and benchmarks under /_emulator/ (not part of the real API; no auth, no faults).

GET  /_emulator/stats                 calls per endpoint, batches created, faults injected
GET  /_emulator/stats/received        custom_id → how many created batches carried it
POST /_emulator/reset-stats           zero the counters (and restart the fault sequence)
POST /_emulator/advance {"seconds": S} move the emulated clock forward (expiry, archiving)
POST /_emulator/batches/{id}/finish   end a batch now
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING
from urllib.parse import unquote

from tegbatchd.emulator.state import NotFound
from tegbatchd.emulator.wire import batch_object, rfc3339

if TYPE_CHECKING:
    from tegbatchd.emulator.server import Handler


def handle(handler: Handler, method: str, rest: str, body: bytes) -> None:
    server = handler.server
    handler.base_url = f"http://{handler.headers.get('Host') or server.host_port}"
    parts = rest.strip("/").split("/")
    if method == "GET" and parts == ["stats"]:
        handler.send_json(200, server.stats.snapshot())
    elif method == "GET" and parts == ["stats", "received"]:
        handler.send_json(200, server.stats.received())
    elif method == "POST" and parts == ["reset-stats"]:
        server.stats.reset()
        server.faults.reset()
        handler.send_json(200, server.stats.snapshot())
    elif method == "POST" and parts == ["advance"]:
        _advance(handler, body)
    elif method == "POST" and len(parts) == 3 and parts[0] == "batches" and parts[2] == "finish":
        batch_id = unquote(parts[1])
        try:
            batch = server.store.finish(batch_id)
        except NotFound:
            handler.send_error_json(404, "not_found_error", f"No message batch with id {batch_id!r}.")
            return
        handler.send_json(200, batch_object(batch, handler.base_url))
    else:
        handler.send_error_json(404, "not_found_error", f"No emulator admin endpoint {method} /_emulator/{rest}")


def _advance(handler: Handler, body: bytes) -> None:
    try:
        seconds = float(json.loads(body or b"{}")["seconds"])
    except (ValueError, KeyError, TypeError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        handler.send_error_json(400, "invalid_request_error", 'expected {"seconds": <number >= 0>}')
        return
    clock = handler.server.store.clock
    clock.advance(seconds)
    handler.server.store.dirty = True
    handler.send_json(200, {"now": rfc3339(clock.now()), "offset_seconds": clock.offset})
