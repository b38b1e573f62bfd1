"""Configuration: the shipped config/default.yaml, overridden by the user's YAML file, validated."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tegbatchd.errors import ConfigError
from tegbatchd.resources import shipped

STAGE_NAMES = ("story_notes", "narrative", "round_story", "synthesis", "main_report", "brief_summary", "satire")
API_MAX_REQUESTS = 100_000
API_MAX_BYTES = 256_000_000


# --- value checks: each returns None when fine, else a short description of the problem -------------
def _str(v):
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _opt_str(v):
    return None if v is None else _str(v)


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _number(lo=None, hi=None, *, integer=False, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            return "must be a whole number" if integer else "must be a number"
        if integer and not isinstance(v, int):
            return "must be a whole number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'greater than' if lo_open else 'at least'} {lo}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'less than' if hi_open else 'at most'} {hi}"
        return None

    return check


def _opt_day(v):
    """A YYYY-MM-DD day (YAML may read it as a date already), or null."""
    import datetime

    if v is None or (isinstance(v, datetime.date) and not isinstance(v, datetime.datetime)):
        return None
    try:
        datetime.date.fromisoformat(v)
    except (TypeError, ValueError):
        return "must be a date (YYYY-MM-DD)"
    return None


_PRICE = {"input": _number(0), "output": _number(0), "cache_write": _number(0), "cache_read": _number(0)}
_STAGE = {"model": _str, "max_tokens": _number(1, 128_000, integer=True)}


@dataclass(frozen=True)
class MapOf:
    """A mapping with free keys (e.g. model names) whose values follow one schema."""

    value: Any


SCHEMA: dict[str, Any] = {
    "data_root": _opt_str,
    "scores_file": _opt_str,
    "rounds_file": _opt_str,
    "api_key_file": _opt_str,
    "api": {"create_timeout_seconds": _number(0, 3600, lo_open=True)},
    "poll_interval_minutes": _number(0, 24 * 60, lo_open=True),
    "max_poll_interval_minutes": _number(0, 24 * 60, lo_open=True),
    "notifications": {"enabled": _bool, "stage_submitted": _bool, "open_command": _opt_str},
    "stages": {name: _STAGE for name in STAGE_NAMES},
    "prompts_dir": _opt_str,
    "prices": MapOf(_PRICE),
    "prices_as_of": _opt_day,
    "batch_discount": _number(0, 1, hi_open=True),
    "batch_limits": {
        "max_requests": _number(1, API_MAX_REQUESTS, integer=True),
        "max_bytes": _number(1024, API_MAX_BYTES, integer=True),
    },
    "retry": {
        "max_attempts": _number(1, 10, integer=True),
        "truncated_factor": _number(1, 16, lo_open=True),
    },
    "now": {
        "tokens_per_minute": _number(1000, integer=True),
        "concurrency": _number(1, 64, integer=True),
        "max_attempts": _number(1, 20, integer=True),
    },
}


def _validate(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path or '(top level)'}: must be a mapping of keys")
            return
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in schema:
                problems.append(f"{where}: unknown key (allowed: {', '.join(schema)})")
            else:
                _validate(sub, schema[key], where, problems)
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            problems.append(f"{path}: must be a mapping")
            return
        for key, sub in value.items():
            _validate(sub, schema.value, f"{path}.{key}", problems)
    else:
        problem = schema(value)
        if problem:
            problems.append(f"{path}: {problem} (got {value!r})")


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "prices":
            out[key] = _merge(out[key], value)
        elif key == "prices" and isinstance(value, dict) and isinstance(out.get(key), dict):
            merged = dict(out[key])
            for model, price in value.items():
                merged[model] = {**merged.get(model, {}), **price} if isinstance(price, dict) else price
            out[key] = merged
        else:
            out[key] = value
    return out


def default_text() -> str:
    """The shipped default configuration, comments included."""
    return shipped("config", "default.yaml").read_text(encoding="utf-8")


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", next_step="run `tegbatchd config init`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML ({problem})",
                          next_step="fix the file, then `tegbatchd config validate`") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


@dataclass
class Config:
    data: dict
    source: Path | None = None
    problems: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def stage(self, name: str) -> dict:
        return self.data["stages"][name]

    def price(self, model: str) -> dict | None:
        """Price per MTok for a model; a dated model id falls back to its family name."""
        prices = self.data["prices"]
        if model in prices:
            return prices[model]
        for name in sorted(prices, key=len, reverse=True):
            if model.startswith(name):
                return prices[name]
        return None


def validate_file(path: Path) -> list[str]:
    """Return every problem of a user config file as 'key.path: problem' (empty when valid)."""
    problems: list[str] = []
    _validate(_read_yaml(path), SCHEMA, "", problems)
    return problems


def load_config(path: Path | None) -> Config:
    """Given the user's config file path (may not exist), return the effective config.

    Raise ConfigError listing every problem (file and key path) when the file is invalid.
    """
    base = yaml.safe_load(default_text())
    if path is None or not path.exists():
        return Config(base, None)
    user = _read_yaml(path)
    problems: list[str] = []
    _validate(user, SCHEMA, "", problems)
    if problems:
        raise ConfigError(
            f"{path}: {len(problems)} problem(s) in the configuration",
            next_step="fix them, then `tegbatchd config validate`",
            details=[f"{path}: {p}" for p in problems],
        )
    return Config(_merge(base, user), path)


def redacted(data: dict) -> dict:
    """A copy safe to print: values of keys that look like secrets are replaced."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = redacted(value)
        elif any(s in key.lower() for s in ("secret", "token_value", "password")) or key.lower() == "api_key":
            out[key] = "***redacted***"
        else:
            out[key] = value
    return out
