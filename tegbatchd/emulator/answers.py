"""Deterministic model answers: a small record per request, and the Message built from it.

The emulator never keeps request params: `summarize_request` reduces them to a `RequestRecord`
(custom_id, params sha256, model, sizes, flags) and every answer is rebuilt from that record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sys
from functools import lru_cache
from typing import Any, NamedTuple

THINKING = 1  # params ask for extended thinking: a thinking block precedes the text
CACHE_WRITE = 2  # first request of its batch with this cached prefix: cache creation, not read
CACHE_1H = 4  # the cached prefix uses the 1-hour TTL

WORDS = (
    "birdie bogey par eagle fairway green bunker rough putt drive approach chip wedge iron "
    "trophy jacket stableford gross round hole card leader chase collapse comeback swing "
    "tee flag pin lie links wind rain sunshine clubhouse caddie scorecard handicap margin"
).split()


# Same output as json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False), reused.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(params: Any) -> bytes:
    return _CANONICAL.encode(params).encode("utf-8")


def canonical_sha256(params: Any) -> str:
    """Return the hex sha256 of `params` serialized as canonical JSON (sorted keys, no spaces, UTF-8)."""
    return hashlib.sha256(canonical_json(params)).hexdigest()


class RequestRecord(NamedTuple):
    custom_id: str
    sha: str
    model: str
    params_bytes: int
    max_tokens: int
    flags: int
    cache_tokens: int
    problem: str | None  # why async validation fails this request (None: valid)


def params_problem(params: Any, *, in_batch: bool) -> str | None:
    """Return the validation message for bad Messages params, or None when they are acceptable."""
    if not isinstance(params, dict):
        return "params: Input should be a valid dictionary"
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required" if model is None else "model: Input should be a valid string"
    if "max_tokens" not in params:
        return "max_tokens: Field required"
    max_tokens = params["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = params.get("messages")
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list) or not messages:
        return "messages: Input should be a non-empty list"
    if in_batch and params.get("stream"):
        return "stream: Streaming is not supported in Message Batches"
    return None


def _cache_prefix(params: dict) -> tuple[Any, str] | None:
    """Return (cached prefix, ttl) when the system prompt carries a cache_control breakpoint."""
    system = params.get("system")
    if isinstance(system, list):
        marks = [i for i, block in enumerate(system) if isinstance(block, dict) and block.get("cache_control")]
        if marks:
            control = system[marks[-1]]["cache_control"]
            ttl = control.get("ttl", "5m") if isinstance(control, dict) else "5m"
            return [params.get("tools"), system[: marks[-1] + 1]], ttl
    control = params.get("cache_control")
    if isinstance(control, dict) and system:
        return [params.get("tools"), system], control.get("ttl", "5m")
    return None


def summarize_request(custom_id: str, params: Any, seen_prefixes: set[str], *, in_batch: bool = True
                      ) -> RequestRecord:
    """Given one request, return its small record; `seen_prefixes` tracks cache writes already done."""
    problem = params_problem(params, in_batch=in_batch)
    raw = canonical_json(params)
    if not isinstance(params, dict):
        params = {}
    flags = 0
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        flags |= THINKING
    cache_tokens = 0
    prefix = _cache_prefix(params) if problem is None else None
    if prefix is not None:
        prefix_raw = canonical_json(prefix[0])
        cache_tokens = max(1, len(prefix_raw) // 4)
        key = hashlib.sha256(prefix_raw).hexdigest()
        if key not in seen_prefixes:
            seen_prefixes.add(key)
            flags |= CACHE_WRITE
        if prefix[1] == "1h":
            flags |= CACHE_1H
    model = params.get("model")
    max_tokens = params.get("max_tokens")
    return RequestRecord(
        custom_id,
        hashlib.sha256(raw).hexdigest(),
        sys.intern(model) if isinstance(model, str) else "",
        len(raw),
        max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0,
        flags,
        cache_tokens,
        problem,
    )


@lru_cache(maxsize=8)
def _filler(size: int) -> str:
    """Return a fixed pseudo-prose ASCII text of at least `size` characters, with paragraphs."""
    rng = random.Random(20171)
    parts: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        piece = sentence.capitalize() + (".\n\n" if rng.random() < 0.2 else ". ")
        parts.append(piece)
        length += len(piece)
    return "".join(parts)


def answer_text(record: RequestRecord, answer_bytes: int, *, custom_id: str | None = None,
                truncated: bool = False) -> str:
    """Return the Markdown answer: names the custom_id and params sha256 on lines of their own."""
    shown_id = custom_id if custom_id is not None else record.custom_id
    head = (f"## Emulated answer\n\ncustom_id: {shown_id}\nparams-sha256: {record.sha}\n"
            f"model: {record.model}\n\n")
    want = max(0, answer_bytes - len(head.encode("utf-8")) - 1)
    if truncated:
        want //= 2
    body = ""
    if want:
        pool = _filler(max(65536, 4 * want))
        start = int(record.sha[:12], 16) % (len(pool) - want)
        boundary = pool.find(". ", start, start + 400)
        start = boundary + 2 if boundary >= 0 else pool.find(" ", start) + 1
        body = pool[start:start + want].strip()
    return head + body + ("" if truncated else "\n")


def build_message(record: RequestRecord, *, message_id: str, answer_bytes: int, service_tier: str,
                  truncated: bool = False, custom_id: str | None = None) -> dict[str, Any]:
    """Return a Messages API `Message` answering `record` (truncated: stop_reason max_tokens)."""
    text = answer_text(record, answer_bytes, custom_id=custom_id, truncated=truncated)
    content: list[dict[str, Any]] = []
    output_chars = len(text)
    if record.flags & THINKING:
        thought = (f"The request {custom_id or record.custom_id} asks {record.model} for at most "
                   f"{record.max_tokens} tokens; the emulator answers deterministically.")
        signature = base64.b64encode(hashlib.sha256(f"sig:{record.sha}".encode()).digest()).decode()
        content.append({"type": "thinking", "thinking": thought, "signature": "EmuSig" + signature})
        output_chars += len(thought)
    content.append({"type": "text", "text": text})
    output_tokens = max(1, output_chars // 4)
    output_tokens = record.max_tokens if truncated else min(output_tokens, max(1, record.max_tokens))
    return {
        "model": record.model,
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
        "usage": usage_of(record, output_tokens, service_tier),
    }


def usage_of(record: RequestRecord, output_tokens: int, service_tier: str) -> dict[str, Any]:
    total = max(1, record.params_bytes // 4)
    cached = min(record.cache_tokens, max(0, total - 1))
    write = cached if record.flags & CACHE_WRITE else 0
    one_hour = bool(record.flags & CACHE_1H)
    return {
        "input_tokens": total - cached,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": cached - write,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if one_hour else write,
            "ephemeral_1h_input_tokens": write if one_hour else 0,
        },
        "output_tokens": output_tokens,
        "service_tier": service_tier,
    }
