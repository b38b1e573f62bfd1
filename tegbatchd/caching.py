"""Prompt caching: which requests share a cacheable prefix, the models' minimum cacheable lengths, and
which requests of a stage to send first so the others read the cache (priming).

A request's cached prefix is its leading `tools` and `system` blocks up to the last one marked
`cache_control` (the prompt order of the Messages API). Two requests share it when those blocks are the
same, byte for byte, for the same model. A prefix shorter than the model's minimum cacheable length is
never cached by the API, so it is neither priced as a cache write nor primed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from tegbatchd.costs import CHARS_PER_TOKEN, EstimateItem

# Minimum cacheable prompt length in tokens, by model family (longest match first). From LiteLLM's
# prompt-caching page (2026-10) and orq.ai's (Sonnet 4.6: 2,048, the larger of the two figures found).
MIN_CACHEABLE = {
    "claude-opus-5": 512,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-7": 4096,
    "claude-haiku-4-5": 4096,
    "claude-haiku-3": 2048,
    "claude-3-5-haiku": 2048,
    "claude-sonnet-4-6": 2048,
}
DEFAULT_MIN_CACHEABLE = 1024   # Sonnet 5, Opus 4.8, Sonnet 4.x, Opus 4/4.1


def min_cacheable(model: str | None) -> int:
    """The fewest prompt tokens a model caches."""
    model = model or ""
    for name in sorted(MIN_CACHEABLE, key=len, reverse=True):
        if model.startswith(name):
            return MIN_CACHEABLE[name]
    return DEFAULT_MIN_CACHEABLE


# Whether a prefix reaches the minimum is judged at 4 characters a token (English prose; the low side of
# the count): a prefix judged long enough that the API then does not cache would make its stage wait for
# nothing. Its price is reckoned at costs.CHARS_PER_TOKEN (the high side).
MIN_CHECK_CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class Prefix:
    key: str           # same model and same blocks: same key (the cache_control marks left out)
    tokens: int        # estimated at costs.CHARS_PER_TOKEN characters a token
    one_hour: bool     # the last mark asks for the 1-hour cache
    chars: int = 0

    def cacheable(self, model: str | None) -> bool:
        """Long enough for the model to cache it (judged on the low side of the token count)."""
        return self.chars / MIN_CHECK_CHARS_PER_TOKEN >= min_cacheable(model)


def _marked(blocks) -> int:
    """Index of the last block carrying cache_control, or -1."""
    if not isinstance(blocks, list):
        return -1
    return max((i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")), default=-1)


def _unmarked(blocks: list) -> list:
    return [{k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b for b in blocks]


def cache_prefix(params: dict) -> Prefix | None:
    """The cached prefix of a request's params, or None when nothing is marked for caching."""
    tools, system = params.get("tools"), params.get("system")
    in_system, in_tools = _marked(system), _marked(tools)
    if in_system >= 0 and isinstance(system, list):
        parts, mark = [tools if isinstance(tools, list) else [], system[: in_system + 1]], system[in_system]
    elif in_tools >= 0 and isinstance(tools, list):
        parts, mark = [tools[: in_tools + 1], []], tools[in_tools]
    else:
        return None
    control = mark.get("cache_control")
    one_hour = isinstance(control, dict) and control.get("ttl") == "1h"
    text = json.dumps([_unmarked(parts[0]), _unmarked(parts[1])], separators=(",", ":"), ensure_ascii=False)
    key = hashlib.sha256(json.dumps([params.get("model"), text]).encode()).hexdigest()
    return Prefix(key, int(len(text) / CHARS_PER_TOKEN), one_hour, len(text))


def item_shape(item) -> EstimateItem:
    """estimate_item of a submission.Item, worked out once per item (the estimate and priming both ask)."""
    if item.shape is None:
        item.shape = estimate_item(item.line, item.model, item.max_tokens)
    return item.shape


def estimate_item(line: bytes, model: str | None, max_tokens: int | None, params: dict | None = None
                  ) -> EstimateItem:
    """What an estimate needs of one archived request line (parsed only when it marks a cache prefix;
    params: the line's params when the caller has them parsed already)."""
    item = EstimateItem(model, int(len(line) / CHARS_PER_TOKEN), max_tokens or 0)
    if b'"cache_control"' not in line:
        return item
    if params is None:
        params = json.loads(line).get("params") or {}
    prefix = cache_prefix(params)
    if prefix is not None and prefix.cacheable(model):
        item.prefix_key, item.prefix_tokens, item.prefix_1h = prefix.key, prefix.tokens, prefix.one_hour
    return item


def primable(items: list[EstimateItem]) -> frozenset[str]:
    """The prefixes worth priming: shared by at least two requests and long enough to be cached."""
    counts: dict[str, int] = {}
    for item in items:
        if item.prefix_key:
            counts[item.prefix_key] = counts.get(item.prefix_key, 0) + 1
    return frozenset(k for k, n in counts.items() if n >= 2)


def on_one_hour_cache(params: dict) -> dict:
    """A copy of params whose cache marks ask for the 1-hour cache (the same blocks, so the same prefix).
    Only the marked blocks and their lists are new; the rest is shared with params (neither is changed)."""
    out = dict(params)
    for group in ("tools", "system"):
        blocks = out.get(group)
        if isinstance(blocks, list):
            out[group] = [_one_hour(block) if isinstance(block, dict) and block.get("cache_control") else block
                          for block in blocks]
    return out


def _one_hour(block: dict) -> dict:
    control = block["cache_control"]
    return {**block, "cache_control": {**control, "ttl": "1h"} if isinstance(control, dict)
            else {"type": "ephemeral", "ttl": "1h"}}
