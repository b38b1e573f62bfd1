"""Checks before anything is recorded or paid for: each model a job will use is one the API still serves
(asked of the Models API, the answer kept for a day), and each request's params follow the API's
documented rules. Written here on the product side, apart from the emulator's own validation, so a wrong
rule in either shows up as a disagreement in the tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tegbatchd.errors import ConfigError, InputError

MODEL_CACHE = timedelta(days=1)
ROLES = ("user", "assistant")
BATCH_REFUSED = ("stream", "speed")          # refused inside a batch request
MIN_THINKING_BUDGET = 1024


@dataclass(frozen=True)
class ModelUse:
    model: str
    origin: str            # "stages.narrative.model in your config", "line 3 of requests.jsonl"
    config_key: str | None = None


def lint_params(params: object, *, allowed: frozenset[str], batch: bool = True) -> list[str]:
    """Problems of one request's params, each naming the field; [] when it follows the documented rules."""
    if not isinstance(params, dict):
        return ["params must be an object"]
    problems = [f"unknown parameter {k!r}" for k in params if k not in allowed]
    if batch:
        problems += [f"{k!r} is not allowed in a batch request" for k in BATCH_REFUSED if k in params]
    model, max_tokens = params.get("model"), params.get("max_tokens")
    if not isinstance(model, str) or not model:
        problems.append("model must be a non-empty string")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        problems.append("max_tokens must be a whole number of at least 1")
    for name, lo, hi in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = params.get(name)
        if name in params and (not _number(value) or not lo <= value <= hi):
            problems.append(f"{name} must be a number from {lo:g} to {hi:g}")
    if "top_k" in params and (not isinstance(params["top_k"], int) or params["top_k"] < 0):
        problems.append("top_k must be a whole number of at least 0")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages must be a non-empty list")
    else:
        for n, message in enumerate(messages):
            if not isinstance(message, dict):
                problems.append(f"messages.{n} must be an object")
                continue
            if message.get("role") not in ROLES:
                problems.append(f"messages.{n}.role must be 'user' or 'assistant' (a system prompt goes in "
                                f"'system'), not {str(message.get('role'))[:40]!r}")
            if not _content(message.get("content")):
                problems.append(f"messages.{n}.content must be a string or a list of content blocks")
    if "system" in params and not (isinstance(params["system"], str) or _content(params["system"])):
        problems.append("system must be a string or a list of text blocks")
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
            problems.append(f"thinking.budget_tokens must be at least {MIN_THINKING_BUDGET}")
        elif isinstance(max_tokens, int) and budget >= max_tokens:
            problems.append("thinking.budget_tokens must be less than max_tokens")
    if not _finite(params):
        problems.append("the body holds NaN or Infinity (the API reads strict JSON)")
    return problems


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _content(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(b, dict) and isinstance(b.get("type"), str)
                                                           for b in value)


def _finite(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def lint_requests(requests, *, source: str) -> None:
    """Raise InputError listing the params problems of (label, params) pairs; nothing is recorded."""
    from tegbatchd.api import message_param_names

    allowed = message_param_names()
    problems = [f"{label}: {problem}" for label, params in requests for problem in lint_params(params, allowed=allowed)]
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise InputError(f"{source}: {len(problems)} request problem(s) the API would refuse; nothing was sent",
                         next_step="fix them and submit again", details=shown)


def replacement(model: str, config) -> str:
    """A current model to suggest instead of `model`: the shipped default of the same family, else any."""
    from tegbatchd.config import load_config

    defaults = [s["model"] for s in load_config(None)["stages"].values()]
    family = next((f for f in ("opus", "sonnet", "haiku") if f in model), None)
    same = [m for m in defaults if family and family in m]
    return (same or defaults)[0]


def check_models(ctx, client, uses: list[ModelUse]) -> list[str]:
    """Ask the Models API about each model (cached a day in the store). Raise ConfigError naming every
    retired or unknown one, where it comes from and a current replacement; return warnings for models the
    SDK lists as deprecated (with their end-of-life date)."""
    from tegbatchd import api as api_mod

    _, deprecated = api_mod.sdk_models()
    problems, warnings, seen = [], [], set()
    for use in uses:
        if use.model in seen:
            continue
        seen.add(use.model)
        if not _served(ctx, client, use.model):
            problems.append(f"model {use.model!r} ({use.origin}) is retired or unknown to the API; "
                            f"use a current one such as {replacement(use.model, ctx.config)!r}")
        elif use.model in deprecated:
            warnings.append(f"model {use.model!r} ({use.origin}) is deprecated: it stops working on "
                            f"{deprecated[use.model]}")
    if problems:
        first = problems[0]
        raise ConfigError(first if len(problems) == 1 else f"{len(problems)} models cannot be used",
                          next_step="change the model (`tegbatchd config path` shows your config); nothing was "
                                    "recorded", details=problems if len(problems) > 1 else [])
    return warnings


def _served(ctx, client, model: str) -> bool:
    from tegbatchd import api as api_mod

    key = f"model:{client.endpoint}:{model}"
    cached = ctx.store.kv_get(key)
    now = datetime.now(UTC)
    if cached:
        entry = json.loads(cached)
        if now - datetime.fromisoformat(entry["checked_at"]) < MODEL_CACHE:
            return bool(entry["served"])
    try:
        client.model(model)
        served = True
    except api_mod.NotFound:
        served = False
    ctx.store.kv_set(key, json.dumps({"served": served, "checked_at": now.isoformat()}))
    return served


def stage_model_uses(config, stage_names) -> list[ModelUse]:
    return [ModelUse(config.stage(name)["model"], f"stages.{name}.model in your config", f"stages.{name}.model")
            for name in stage_names]
