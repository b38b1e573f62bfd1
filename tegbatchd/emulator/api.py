"""The public endpoints: Message Batches (create, retrieve, list, cancel, delete, results), Messages, Models."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tegbatchd.emulator.answers import build_message, summarize_request
from tegbatchd.emulator.ids import fraction, random_id
from tegbatchd.emulator.models import ACTIVE, DEPRECATED, RETIRED, model_info
from tegbatchd.emulator.options import MAX_REQUESTS
from tegbatchd.emulator.outcomes import CREDIT_MESSAGE, iter_result_lines
from tegbatchd.emulator.replay import (
    iter_replay_lines,
    match_replay,
    replay_tag,
    tagged_lines,
    tagged_verbatim,
)
from tegbatchd.emulator.state import InvalidState, NotFound
from tegbatchd.emulator.validation import check_request
from tegbatchd.emulator.wire import batch_object

if TYPE_CHECKING:
    from tegbatchd.emulator.server import Handler

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
NO_CUSTOM_ID = "(none)"  # what a Messages API answer shows on its custom_id line


class ApiError(Exception):
    """An error answer: HTTP status, error type, message (and optionally error.details.error_code, headers)."""

    def __init__(self, status: int, error_type: str, message: str, error_code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.error_code, self.headers = error_code, headers


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def not_found(batch_id: str) -> ApiError:
    return ApiError(404, "not_found_error", f"No message batch with id {batch_id!r}.")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def parse_json(body: bytes) -> Any:
    """Parse the body as strict JSON (the API's reading: no NaN, Infinity or overflowing numbers)."""
    if not body.strip():
        raise bad_request("Request body is empty; expected a JSON object.")
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Invalid JSON in request body: {exc}") from exc


def create(handler: Handler, body: bytes) -> None:
    """POST /v1/messages/batches: check the envelope, keep a small record per request, store."""
    server = handler.server
    refusal = server.faults.spend_limit()
    if refusal is not None:
        server.stats.fault_injected()
        raise ApiError(refusal.status, refusal.error_type, refusal.message, refusal.error_code)
    payload = parse_json(body)
    if not isinstance(payload, dict) or "requests" not in payload:
        raise bad_request("requests: Field required")
    requests = payload["requests"]
    if not isinstance(requests, list):
        raise bad_request("requests: Input should be a valid list")
    if not 1 <= len(requests) <= MAX_REQUESTS:
        bound = "at least 1 item" if not requests else f"at most {MAX_REQUESTS} items"
        raise bad_request(f"requests: List should have {bound} after validation, not {len(requests)}")
    records = []
    seen: set[str] = set()
    prefixes: set[str] | None = set() if server.opts.cache_model == "optimistic" else None
    day = server.today()
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise bad_request(f"requests.{index}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            raise bad_request(f"requests.{index}.custom_id: String should match pattern "
                              f"'^[a-zA-Z0-9_-]{{1,64}}$', got {custom_id!r}")
        if custom_id in seen:
            raise bad_request(f"requests.{index}.custom_id: Duplicate custom_id {custom_id!r}; "
                              "custom_id values must be unique within a batch.")
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            raise bad_request(f"requests.{index}.params: "
                              + ("Field required" if params is None else "Input should be a valid dictionary"))
        problem = check_request(params, server.catalogue, day, in_batch=True)
        records.append(summarize_request(custom_id, params, problem, prefixes))
    del payload, requests
    batch = server.store.create(records, match_replay(server.replays, [r.custom_id for r in records]))
    server.stats.batch_created(r.custom_id for r in records)
    created = batch_object(batch, handler.base_url)
    unclear = server.faults.unclear_create()
    if unclear == "drop":
        handler.abort()
        return
    if unclear == "stall" and server.stopping.wait(server.opts.stall_seconds):
        handler.abort()
        return
    handler.send_json(200, created)


def retrieve(handler: Handler, batch_id: str) -> None:
    store = handler.server.store
    try:
        if handler.server.faults.hides_new_batch(store.created_at(batch_id), store.clock.now()):
            handler.server.stats.fault_injected()
            raise not_found(batch_id)
        batch = store.get(batch_id)
    except NotFound:
        raise not_found(batch_id) from None
    handler.send_json(200, batch_object(batch, handler.base_url))


def list_batches(handler: Handler, query: str) -> None:
    """GET /v1/messages/batches: newest first, `limit` 1-1000 (20), `after_id` / `before_id` cursors."""
    params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise bad_request(f"limit: Input should be a valid integer, got {params['limit']!r}") from None
    if not 1 <= limit <= 1000:
        raise bad_request(f"limit: Input should be between 1 and 1000, got {limit}")
    after_id, before_id = params.get("after_id") or None, params.get("before_id") or None
    try:
        batches, has_more = handler.server.store.page(limit, after_id, before_id,
                                                      handler.server.opts.list_lag_seconds)
    except NotFound as exc:
        raise bad_request(f"Invalid pagination cursor: no message batch with id {exc.args[0]!r}.") from None
    data = [batch_object(batch, handler.base_url) for batch in batches]
    handler.send_json(200, {"data": data, "has_more": has_more,
                            "first_id": data[0]["id"] if data else None,
                            "last_id": data[-1]["id"] if data else None})


def cancel(handler: Handler, batch_id: str) -> None:
    try:
        batch = handler.server.store.cancel(batch_id)
    except NotFound:
        raise not_found(batch_id) from None
    except InvalidState as exc:
        raise bad_request(str(exc)) from None
    handler.send_json(200, batch_object(batch, handler.base_url))


def delete(handler: Handler, batch_id: str) -> None:
    try:
        handler.server.store.delete(batch_id)
    except NotFound:
        raise not_found(batch_id) from None
    except InvalidState as exc:
        raise bad_request(str(exc)) from None
    handler.send_json(200, {"id": batch_id, "type": "message_batch_deleted"})


def results(handler: Handler, batch_id: str) -> None:
    """Stream the results JSONL, generated line by line (or replayed from a recorded file)."""
    server = handler.server
    try:
        batch = server.store.get(batch_id)
    except NotFound:
        raise not_found(batch_id) from None
    if not batch.ended:
        raise bad_request(f"Batch {batch_id} has not finished processing; results are not available yet.")
    if batch.archived_at is not None:
        raise ApiError(404, "not_found_error",
                       f"Results of batch {batch_id} are no longer available (retention period over).")
    if batch.replay is not None:
        lines = iter_replay_lines(batch.replay.path, verbatim=batch.replay.verbatim)
        tag = replay_tag(batch.replay, [r.custom_id for r in batch.requests])
        if tag and batch.replay.verbatim:
            lines = tagged_verbatim(lines, tag, [r.custom_id for r in batch.requests])
        elif tag:
            lines = tagged_lines(lines, tag)
    else:
        lines = iter_result_lines(batch.id, batch.requests, batch.outcomes or "", server.opts)
    handler.stream_lines(lines, server.faults.results_cut_after(), filename=f"{batch.id}_results.jsonl")


def messages(handler: Handler, body: bytes) -> None:
    """POST /v1/messages: the same checks and deterministic answer, at once, with service_tier "standard".

    The request finishes now, so its cache write is readable by the next request (realistic cache model).
    """
    server = handler.server
    params = parse_json(body)
    problem = check_request(params, server.catalogue, server.today(), in_batch=False)
    if problem is not None:
        raise ApiError(problem.status, problem.error_type, problem.message)
    if params.get("stream"):
        raise bad_request("stream: the emulator does not support streaming responses")
    if server.opts.credit_exhausted:
        raise bad_request(CREDIT_MESSAGE)
    if server.opts.cache_model == "optimistic":
        with server.message_lock:
            if len(server.message_prefixes) > 10_000:
                server.message_prefixes.clear()
            record = summarize_request(NO_CUSTOM_ID, params, None, server.message_prefixes)
    else:
        record = summarize_request(NO_CUSTOM_ID, params, None)
        if record.cache_key:
            (record,) = server.store.cache.process([record], server.store.clock.now())
    truncated = fraction(server.opts.seed, "messages", record.sha) < server.opts.max_tokens_rate
    message = build_message(record, message_id=random_id("msg_"), answer_bytes=server.opts.answer_bytes,
                            service_tier="standard", truncated=truncated)
    handler.send_json(200, message)


def list_models(handler: Handler, query: str) -> None:
    """GET /v1/models: newest first, `limit` 1-1000 (20), cursors; active and deprecated unless `lifecycle`."""
    parsed = parse_qs(query, keep_blank_values=True)
    params = {key: values[-1] for key, values in parsed.items()}
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise bad_request(f"limit: Input should be a valid integer, got {params['limit']!r}") from None
    if not 1 <= limit <= 1000:
        raise bad_request(f"limit: Input should be between 1 and 1000, got {limit}")
    wanted = [v for key in ("lifecycle", "lifecycle[]") for value in parsed.get(key, []) for v in value.split(",")]
    for value in wanted:
        if value not in (ACTIVE, DEPRECATED, RETIRED):
            raise bad_request(f"lifecycle: Input should be 'active', 'deprecated' or 'retired', got {value!r}")
    stages = set(wanted) or {ACTIVE, DEPRECATED}
    day = handler.server.today()
    models = [m for m in handler.server.catalogue.models if m.lifecycle(day) in stages]
    ids = [m.id for m in models]
    after_id, before_id = params.get("after_id") or None, params.get("before_id") or None
    for cursor in (after_id, before_id):
        if cursor is not None and cursor not in ids:
            raise bad_request(f"Invalid pagination cursor: no model with id {cursor!r} in this list.")
    lo, hi = 0, len(models)
    if after_id is not None:
        lo = ids.index(after_id) + 1
    if before_id is not None:
        hi = ids.index(before_id)
    if before_id is not None and after_id is None:
        start = max(lo, hi - limit)
        page, has_more = models[start:hi], start > lo
    else:
        page, has_more = models[lo:min(hi, lo + limit)], lo + limit < hi
    data = [model_info(m, day) for m in page]
    handler.send_json(200, {"data": data, "has_more": has_more,
                            "first_id": data[0]["id"] if data else None,
                            "last_id": data[-1]["id"] if data else None})


def retrieve_model(handler: Handler, name: str) -> None:
    """GET /v1/models/{id}: by id or alias, retired models included; unknown ones are 404."""
    model = handler.server.catalogue.get(name)
    if model is None:
        raise ApiError(404, "not_found_error", f"model: {name}")
    handler.send_json(200, model_info(model, handler.server.today()))
