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

from tegbatchd.errors import ConfigError, InputError, listed

MODEL_CACHE = timedelta(days=1)
ROLES = ("user", "assistant")
BATCH_REFUSED = ("stream", "speed")          # refused inside a batch request
MIN_THINKING_BUDGET = 1024


@dataclass(frozen=True)
class ModelUse:
    model: str
    origin: str            # "stages.narrative.model in your config", "request X of requests.jsonl"
    config_key: str | None = None
    max_tokens: int | None = None   # the largest max_tokens asked of it


def lint_params(params: object, *, allowed: frozenset[str], batch: bool = True, finite: bool = False) -> list[str]:
    """Problems of one request's params, each naming the field; [] when it follows the documented rules.
    finite: the caller knows its numbers are finite (its parser saw every float), so they are not walked
    again."""
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
        if name in params and not (isinstance(value, int | float) and _number(value) and lo <= value <= hi):
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
    if not finite and not _finite(params):
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


class ParamsLint:
    """The params problems of requests, gathered as they are read (add), raised together (check)."""

    def __init__(self) -> None:
        from tegbatchd.api import message_param_names

        self.allowed = message_param_names()
        self.problems: list[str] = []

    def add(self, label: str, params: object, finite: bool = False) -> None:
        """finite: params came from a parser that saw every float finite (no second walk)."""
        self.problems += [f"{label}: {problem}" for problem in lint_params(params, allowed=self.allowed,
                                                                            finite=finite)]

    def check(self, source: str) -> None:
        """Raise InputError listing the problems gathered; nothing is recorded."""
        problems = self.problems
        if problems:
            shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
            message, details = listed(str(source), shown,
                                      f"{source}: {len(problems)} request problem(s) the API would refuse; nothing "
                                      "was sent", " (the API would refuse it); nothing was sent")
            raise InputError(message, next_step="fix them and submit again", details=details)


def lint_requests(requests, *, source: str) -> None:
    """Raise InputError listing the params problems of (label, params) pairs; nothing is recorded."""
    lint = ParamsLint()
    for label, params in requests:
        lint.add(label, params)
    lint.check(source)


def replacement(client, info: dict | None, model: str) -> str | None:
    """An active model of the same line (the Models API's `line`), else the newest active one."""
    from tegbatchd import api as api_mod

    try:
        active = [m for m in client.models() if m["lifecycle"] == "active"]
    except api_mod.ApiError:
        return None
    line = (info or {}).get("line")
    same = [m for m in active if line and m.get("line") == line]
    return (same or active or [{"id": None}])[0]["id"]


def check_models(ctx, client, uses: list[ModelUse]) -> list[str]:
    """Ask the Models API about each model (kept a day in the store). Raise ConfigError naming every
    retired or unknown one, where it comes from and a current replacement; return warnings for deprecated
    ones (with their retirement date)."""
    problems, warnings, seen = [], [], set()
    for use in uses:
        if use.model in seen:
            continue
        seen.add(use.model)
        info = model_info(ctx, client, use.model)
        if info is None or info["lifecycle"] == "retired":
            what = "retired" if info else "unknown to the API"
            better = replacement(client, info, use.model)
            problems.append(f"model {use.model!r} ({use.origin}) is {what}"
                            + (f"; use a current one such as {better!r}" if better else ""))
        elif use.max_tokens and info.get("max_tokens") and use.max_tokens > info["max_tokens"]:
            problems.append(f"max_tokens {use.max_tokens} ({use.origin}) is above {use.model}'s limit of "
                            f"{info['max_tokens']}")
        if info is not None and info["lifecycle"] == "deprecated":
            when = (info.get("retires_at") or "")[:10] or "a date the API has not set"
            warnings.append(f"model {use.model!r} ({use.origin}) is deprecated: it stops working on {when}")
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} models cannot be used",
                          next_step="change the model (`tegbatchd config path` shows your config); nothing was "
                                    "recorded", details=problems if len(problems) > 1 else [])
    return warnings


def model_info(ctx, client, model: str) -> dict | None:
    """The Models API's answer for a model (None: unknown), from the store when asked within a day."""
    from tegbatchd import api as api_mod

    key = f"model:{client.endpoint}:{model}"
    cached = ctx.store.kv_get(key)
    now = datetime.now(UTC)
    if cached:
        entry = json.loads(cached)
        if now - datetime.fromisoformat(entry["checked_at"]) < MODEL_CACHE:
            return entry["info"]
    try:
        info = client.model(model)
    except api_mod.NotFound:
        info = None
    ctx.store.kv_set(key, json.dumps({"info": info, "checked_at": now.isoformat()}))
    return info


def stage_model_uses(config, stage_names) -> list[ModelUse]:
    return [ModelUse(config.stage(name)["model"], f"stages.{name} in your config", f"stages.{name}.model",
                     config.stage(name)["max_tokens"]) for name in stage_names]


def item_model_uses(items, origin: str) -> list[ModelUse]:
    """One use per model of the items: the first request naming it, and the largest max_tokens asked."""
    uses: dict[str, ModelUse] = {}
    for item in items:
        if not item.model:
            continue
        known = uses.get(item.model)
        top = max(item.max_tokens or 0, known.max_tokens or 0) if known else item.max_tokens
        uses[item.model] = ModelUse(item.model, known.origin if known else f"request {item.custom_id} of {origin}",
                                    max_tokens=top)
    return list(uses.values())


def sdk_model_warnings(uses: list[ModelUse]) -> list[str]:
    """Offline: models the installed SDK lists as deprecated (with their end-of-life date), or does not list."""
    from tegbatchd import api as api_mod

    known, deprecated = api_mod.sdk_models()
    out = []
    for use in {u.model: u for u in uses}.values():
        if use.model in deprecated:
            out.append(f"model {use.model!r} ({use.origin}) is deprecated: it stops working on "
                       f"{deprecated[use.model]}")
        elif known and use.model not in known:
            out.append(f"model {use.model!r} ({use.origin}) is not in the installed SDK's model list (retired, "
                       "or newer than it): `tegbatchd submit` checks it with the Models API")
    return out
