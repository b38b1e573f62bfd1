"""How each request of an ended batch turns out, and its results line, both fixed by the seed.

An outcome is one character per request, kept as a string on the batch (100,000 requests: 100 KB):
`s` succeeded, `t` succeeded but cut at max_tokens, `0`..`8` errored with ERROR_TYPES[digit],
`b` errored because the credit balance is too low (--credit-exhausted), `c` canceled, `x` expired.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

from tegbatchd.emulator.answers import RequestRecord, build_message
from tegbatchd.emulator.ids import derived_id, fraction
from tegbatchd.emulator.options import ERROR_TYPES, Options
from tegbatchd.emulator.replay import common_tag
from tegbatchd.emulator.wire import error_envelope

TRANSIENT = ("overloaded_error", "api_error")
ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "Rate limited",
    "timeout_error": "Request timed out",
    "invalid_request_error": "Invalid request",
}
CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. "
                  "Please go to Plans & Billing to upgrade or purchase credits.")

# End modes: how the batch ended.
NORMAL, CANCELED, EXPIRED = "normal", "canceled", "expired"


def decide_outcomes(batch_id: str, records: Sequence[RequestRecord], end_mode: str, opts: Options) -> str:
    """Return one outcome character per request (see the module docstring).

    Chance hangs on the seed, the batch id and each request's readable custom_id: a tag the client put on
    every id of the batch ("<id>-<tag>", fresh for each send) is left out, so a seeded run turns out the same
    whatever tags the client drew."""
    seed = opts.seed
    out: list[str] = []
    injected = 0
    tag = common_tag([record.custom_id for record in records])
    cut = -len(tag) - 1 if tag else None
    for record in records:
        cid = record.custom_id[:cut]
        if end_mode == EXPIRED:
            out.append("x")
        elif end_mode == CANCELED and fraction(seed, batch_id, cid, "cancel-finish") >= opts.cancel_finish_rate:
            out.append("c")
        elif opts.credit_exhausted:
            out.append("b")
        elif record.problem is not None:
            out.append(str(ERROR_TYPES.index(record.problem_type)))
        elif opts.error_rate and fraction(seed, batch_id, cid, "error") < opts.error_rate:
            error_type = opts.error_type or TRANSIENT[injected % 2]
            injected += 1
            out.append(str(ERROR_TYPES.index(error_type)))
        elif opts.expire_rate and fraction(seed, batch_id, cid, "expire") < opts.expire_rate:
            out.append("x")
        elif opts.max_tokens_rate and fraction(seed, batch_id, cid, "max-tokens") < opts.max_tokens_rate:
            out.append("t")
        else:
            out.append("s")
    return "".join(out)


def count_outcomes(outcomes: str) -> dict[str, int]:
    """Return the final `request_counts` for an outcome string."""
    succeeded = outcomes.count("s") + outcomes.count("t")
    canceled = outcomes.count("c")
    expired = outcomes.count("x")
    return {
        "processing": 0,
        "succeeded": succeeded,
        "errored": len(outcomes) - succeeded - canceled - expired,
        "canceled": canceled,
        "expired": expired,
    }


def result_object(batch_id: str, record: RequestRecord, outcome: str, opts: Options) -> dict[str, Any]:
    """Return the `result` of one `MessageBatchIndividualResponse`."""
    if outcome in "st":
        message = build_message(record, message_id=derived_id("msg_", batch_id, record.custom_id),
                                answer_bytes=opts.answer_bytes, service_tier="batch", truncated=outcome == "t")
        return {"type": "succeeded", "message": message}
    if outcome == "c":
        return {"type": "canceled"}
    if outcome == "x":
        return {"type": "expired"}
    if outcome == "b":
        request_id = derived_id("req_", batch_id, record.custom_id)
        return {"type": "errored", "error": error_envelope("invalid_request_error", CREDIT_MESSAGE, request_id)}
    error_type = ERROR_TYPES[int(outcome)]
    error_message = record.problem or ERROR_MESSAGES.get(error_type, f"Emulated {error_type}")
    request_id = derived_id("req_", batch_id, record.custom_id)
    return {"type": "errored", "error": error_envelope(error_type, error_message, request_id)}


_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def result_line(batch_id: str, record: RequestRecord, outcome: str, opts: Options) -> bytes:
    line = {"custom_id": record.custom_id, "result": result_object(batch_id, record, outcome, opts)}
    return (_LINE.encode(line) + "\n").encode("utf-8")


def iter_result_lines(batch_id: str, records: Sequence[RequestRecord], outcomes: str, opts: Options
                      ) -> Iterator[bytes]:
    """Yield the LF-terminated JSONL results, generated one line at a time."""
    order: Sequence[int] = range(len(records))
    if opts.shuffle_results:
        order = list(order)
        random.Random(f"{opts.seed}:{batch_id}").shuffle(order)
    for index in order:
        yield result_line(batch_id, records[index], outcomes[index], opts)
