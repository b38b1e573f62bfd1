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
    problem: str | None  # why validation fails this request (None: valid)
    problem_type: str = "invalid_request_error"  # the error type of `problem`
    cache_key: str = ""  # the cached prefix's key (model and prefix), "" without a cache breakpoint


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


def summarize_request(custom_id: str, params: Any, problem: tuple[str, str] | None,
                      seen_prefixes: set[str] | None = None) -> RequestRecord:
    """Given one request and its validation problem (error type, message), return its small record.

    `seen_prefixes` (optimistic cache model) marks the first request with a prefix as its cache write;
    without it the write-or-read decision is left to the prompt cache when the request is processed.
    """
    raw = canonical_json(params)
    if not isinstance(params, dict):
        params = {}
    flags = 0
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        flags |= THINKING
    cache_tokens = 0
    cache_key = ""
    prefix = _cache_prefix(params) if problem is None else None
    if prefix is not None:
        prefix_raw = canonical_json(prefix[0])
        cache_tokens = max(1, len(prefix_raw) // 4)
        cache_key = sys.intern(hashlib.sha256(canonical_json([params.get("model"), prefix[0]])).hexdigest())
        if seen_prefixes is not None and cache_key not in seen_prefixes:
            seen_prefixes.add(cache_key)
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
        problem[1] if problem else None,
        problem[0] if problem else "invalid_request_error",
        cache_key,
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


CHARS_PER_TOKEN = 4  # the emulator's token estimate, for prompts and answers alike


def build_message(record: RequestRecord, *, message_id: str, answer_bytes: int, service_tier: str,
                  truncated: bool = False, custom_id: str | None = None) -> dict[str, Any]:
    """Return a Messages API `Message` answering `record`.

    An answer longer than max_tokens (estimated at 4 characters a token, thinking included) is cut there
    with stop_reason "max_tokens"; `truncated` (the --max-tokens-rate fault) cuts it even when it fits.
    """
    text = answer_text(record, answer_bytes, custom_id=custom_id, truncated=truncated)
    content: list[dict[str, Any]] = []
    budget = max(1, record.max_tokens) * CHARS_PER_TOKEN
    thinking_tokens = 0
    if record.flags & THINKING:
        thought = (f"The request {custom_id or record.custom_id} asks {record.model} for at most "
                   f"{record.max_tokens} tokens; the emulator answers deterministically.")
        thought = thought[:budget]
        signature = base64.b64encode(hashlib.sha256(f"sig:{record.sha}".encode()).digest()).decode()
        content.append({"type": "thinking", "thinking": thought, "signature": "EmuSig" + signature})
        thinking_tokens = max(1, len(thought) // CHARS_PER_TOKEN)
        budget -= len(thought)
    cut = truncated or len(text) > budget
    if len(text) > budget:
        text = text[:max(0, budget)]
    content.append({"type": "text", "text": text, "citations": None})
    output_chars = sum(len(block.get("text") or block.get("thinking") or "") for block in content)
    output_tokens = record.max_tokens if cut else min(max(1, output_chars // CHARS_PER_TOKEN),
                                                      max(1, record.max_tokens))
    return {
        "model": record.model,
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": "max_tokens" if cut else "end_turn",
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": usage_of(record, output_tokens, service_tier, min(thinking_tokens, output_tokens)),
    }


def usage_of(record: RequestRecord, output_tokens: int, service_tier: str, thinking_tokens: int = 0
             ) -> dict[str, Any]:
    total = max(1, record.params_bytes // CHARS_PER_TOKEN)
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
        "output_tokens_details": {"thinking_tokens": thinking_tokens},
        "server_tool_use": None,
        "service_tier": service_tier,
        "inference_geo": "global",
    }
