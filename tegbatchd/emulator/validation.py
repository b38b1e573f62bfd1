"""The Messages API's own checks of a request body, as the API documents them, written for the emulator alone.

Deliberately independent of the product's code (nothing under tegbatchd/ outside emulator/ is imported): a
wrong rule in the product must meet a second, separately written rule here. Each problem names its field,
the way the API's messages do (`max_tokens: ...`). In a batch a problem becomes an `errored` result line;
on /v1/messages it is an HTTP error (400, or 404 for an unknown or retired model).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, NamedTuple

from tegbatchd.emulator.models import RETIRED, Catalogue

INVALID, NOT_FOUND = "invalid_request_error", "not_found_error"
MIN_THINKING_BUDGET = 1024
MAX_CACHE_BREAKPOINTS = 4
TTLS = ("5m", "1h")
ROLES = ("user", "assistant")
# Top-level fields of a Messages create body (API reference; the SDK's MessageCreateParams plus the
# sampling fields that older models still take).
KNOWN_FIELDS = frozenset({
    "model", "max_tokens", "messages", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "thinking", "tools", "tool_choice", "cache_control", "container", "diagnostics", "inference_geo",
    "output_config", "service_tier", "speed", "mcp_servers", "context_management",
})
SAMPLING = ("temperature", "top_p", "top_k")


class Problem(NamedTuple):
    error_type: str
    message: str

    @property
    def status(self) -> int:
        return 404 if self.error_type == NOT_FOUND else 400


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not (isinstance(value, float) and not math.isfinite(value)))


def check_request(params: Any, catalogue: Catalogue, day: date, *, in_batch: bool) -> Problem | None:
    """Return the first problem the API would report for this Messages body, or None when it is accepted."""
    try:
        _check(params, catalogue, day, in_batch)
    except _Refused as refused:
        return refused.problem
    return None


class _Refused(Exception):
    def __init__(self, message: str, error_type: str = INVALID) -> None:
        super().__init__(message)
        self.problem = Problem(error_type, message)


def _check(params: Any, catalogue: Catalogue, day: date, in_batch: bool) -> None:
    if not isinstance(params, dict):
        raise _Refused("params: Input should be a valid dictionary")
    for key in params:
        if key not in KNOWN_FIELDS:
            raise _Refused(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in params:
            raise _Refused(f"{key}: Field required")
    name = params["model"]
    if not isinstance(name, str) or not name:
        raise _Refused("model: Input should be a valid string")
    model = catalogue.get(name)
    if model is None or model.lifecycle(day) == RETIRED:
        raise _Refused(f"model: {name}", NOT_FOUND)
    max_tokens = params["max_tokens"]
    if not _int(max_tokens):
        raise _Refused("max_tokens: Input should be a valid integer")
    lowest = 1 if in_batch else 0  # max_tokens 0 (cache pre-warming) is refused inside a batch
    if max_tokens < lowest:
        raise _Refused(f"max_tokens: Input should be greater than or equal to {lowest}")
    if max_tokens > model.max_output_tokens:
        raise _Refused(f"max_tokens: {max_tokens} > {model.max_output_tokens}, which is the maximum allowed "
                       f"number of output tokens for {name}")
    if in_batch and params.get("stream") not in (None, False):
        raise _Refused("stream: streaming is not supported in the Message Batches API")
    if in_batch and params.get("speed") is not None:
        raise _Refused("speed: fast mode is not supported in the Message Batches API")
    _check_sampling(params, name, model.rejects)
    _check_thinking(params.get("thinking"), max_tokens, name, model.rejects)
    _check_system(params.get("system"))
    _check_messages(params["messages"])
    _check_cache_controls(params)


def _check_sampling(params: dict, name: str, rejects: frozenset[str]) -> None:
    for key, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = params.get(key)
        if value is None:
            continue
        if not _number(value):
            raise _Refused(f"{key}: Input should be a valid number")
        if value < low:
            raise _Refused(f"{key}: Input should be greater than or equal to {low:g}")
        if value > high:
            raise _Refused(f"{key}: Input should be less than or equal to {high:g}")
    top_k = params.get("top_k")
    if top_k is not None and (not _int(top_k) or top_k < 0):
        raise _Refused("top_k: Input should be an integer greater than or equal to 0")
    if "sampling" in rejects:
        for key in SAMPLING:
            if params.get(key) is not None and not (key == "temperature" and params[key] == 1):
                raise _Refused(f"{key}: is not supported on {name}; remove it (only the default value is accepted)")


def _check_thinking(thinking: Any, max_tokens: int, name: str, rejects: frozenset[str]) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise _Refused("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    if thinking["type"] != "enabled":
        return
    if "manual_thinking" in rejects:
        raise _Refused(f"thinking.type: 'enabled' (manual extended thinking) is not supported on {name}; "
                       "use 'adaptive'")
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise _Refused("thinking.enabled.budget_tokens: Field required")
    if not _int(budget):
        raise _Refused("thinking.enabled.budget_tokens: Input should be a valid integer")
    if budget < MIN_THINKING_BUDGET:
        raise _Refused(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                       f"{MIN_THINKING_BUDGET}")
    if budget >= max_tokens:
        raise _Refused(f"max_tokens: must be greater than thinking.budget_tokens ({max_tokens} <= {budget})")


def _check_text_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise _Refused(f"{where}: Input should be a valid dictionary")
    if not isinstance(block.get("type"), str):
        raise _Refused(f"{where}.type: Field required")
    if block["type"] == "text" and not isinstance(block.get("text"), str):
        raise _Refused(f"{where}.text: Input should be a valid string")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _Refused("system: Input should be a valid string or a list of text blocks")
    for index, block in enumerate(system):
        _check_text_block(block, f"system.{index}")
        if block["type"] != "text":
            raise _Refused(f"system.{index}.type: Input should be 'text'")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _Refused("messages: Input should be a valid list")
    if not messages:
        raise _Refused("messages: List should have at least 1 item after validation, not 0")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _Refused(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise _Refused(f'{where}.role: Unexpected role "system". The Messages API accepts a top-level '
                           '`system` parameter, not "system" as an input message role.')
        if role not in ROLES:
            raise _Refused(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise _Refused(f"{where}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise _Refused(f"{where}.content: Input should be a valid string or a list of content blocks")
        for number, block in enumerate(content):
            _check_text_block(block, f"{where}.content.{number}")


def _cache_controls(params: dict):
    """Yield (where, cache_control) for every breakpoint, in prompt order: tools, system, messages, top level."""
    for group in ("tools", "system"):
        items = params.get(group)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, dict) and item.get("cache_control") is not None:
                    yield f"{group}.{index}.cache_control", item["cache_control"]
    for index, message in enumerate(params.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for number, block in enumerate(content):
                if isinstance(block, dict) and block.get("cache_control") is not None:
                    yield f"messages.{index}.content.{number}.cache_control", block["cache_control"]
    if params.get("cache_control") is not None:
        yield "cache_control", params["cache_control"]


def _check_cache_controls(params: dict) -> None:
    count = 0
    for where, control in _cache_controls(params):
        count += 1
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            raise _Refused(f"{where}.type: Input should be 'ephemeral'")
        if control.get("ttl", "5m") not in TTLS:
            raise _Refused(f"{where}.ttl: Input should be '5m' or '1h'")
    if count > MAX_CACHE_BREAKPOINTS:
        raise _Refused(f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
                       f"Found {count}.")
