"""Cache priming: a stage whose requests share a cacheable prefix sends one request with it first, on the
1-hour cache, and the rest once that one has finished, so they read the cache instead of each writing it.

Batches process their requests together: none reads another's write (tests/fixtures: 7 writes of one
prefix, no read), hence Anthropic's advice to send one first. The first one goes as a batch (half price,
like the rest; the standard API would be quicker but costs double and needs a second code path). Every
request of a primed prefix is put on the 1-hour cache, byte for byte the same blocks, so the entry the
first one writes is the one the others look up, and it outlives a batch's queueing; a request that still
misses writes at 2x input instead of 1.25x (the dry run prices both ways).

Kill-safe like any stage: the first batch's intent and the rest's (state `held`) are recorded in one
transaction before any create; the engine releases the held ones (held → open, then create) when the
first has an outcome, whatever the outcome.
"""

from __future__ import annotations

import json

from tegbatchd.caching import item_shape, on_one_hour_cache, primable
from tegbatchd.estimates import priming_on
from tegbatchd.submission import Item, archive_intents, with_params


def split_for_priming(config, items: list[Item]) -> tuple[list[Item], list[Item]] | None:
    """(sent first, held) for a stage's items; None when it is not primed (cache_priming off, or no prefix
    shared by two or more requests at the model's minimum cacheable length). Sent first: one request of
    each shared prefix, and the requests that share none."""
    if not priming_on(config):
        return None
    shapes = [item_shape(i) for i in items]
    keys = primable(shapes)
    if not keys:
        return None
    first: list[Item] = []
    held: list[Item] = []
    chosen: set[str] = set()
    for item, shape in zip(items, shapes, strict=True):
        if shape.prefix_key not in keys:
            first.append(item)
            continue
        if not shape.prefix_1h:
            item = with_params(item, on_one_hour_cache(json.loads(item.line)["params"]))
        if shape.prefix_key in chosen:
            held.append(item)
        else:
            chosen.add(shape.prefix_key)
            first.append(item)
    return first, held


def record_stage(ctx, job_id: str, stage: dict, items: list[Item], notes: list[str], *, intent_state,
                 prime: bool) -> tuple[list[int], int]:
    """Archive and record a stage's items (primed when `prime` and it applies); return (ids of the
    intents to send now, requests held until the first ones finish)."""
    split = split_for_priming(ctx.config, items) if prime else None
    if split is None:
        return ctx.store.record_stage(stage["id"], archive_intents(ctx, job_id, stage, items), notes,
                                      intent_state=intent_state), 0
    first, held = split
    ids = ctx.store.record_stage(stage["id"], archive_intents(ctx, job_id, stage, first), notes,
                                 intent_state=intent_state, held=archive_intents(ctx, job_id, stage, held))
    return ids, len(held)
