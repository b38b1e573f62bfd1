"""Configuration: the shipped config/default.yaml, overridden by the user's YAML file, validated."""

from __future__ import annotations

import copy
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tegbatchd.errors import ConfigError, listed
from tegbatchd.resources import shipped

STAGE_NAMES = ("story_notes", "narrative", "round_story", "synthesis", "main_report", "brief_summary", "satire")
API_MAX_REQUESTS = 100_000
API_MAX_BYTES = 256_000_000
MAX_CONFIG_BYTES = 1_000_000   # a config file is a few KB; anything this big is the wrong file
MAX_ALIASES = 100              # YAML alias uses per document (an "alias bomb" expands exponentially)
MAX_NODES = 10_000             # YAML nodes once every alias is expanded
MAX_DEPTH = 50                 # YAML nesting (the shipped file is 3 deep)
MAX_INT_DIGITS = 100
SHOWN_CHARS = 60               # how much of a bad value an error message shows


# --- value checks: each returns None when fine, else a short description of the problem -------------
def _str(v):
    if not isinstance(v, str) or not v.strip():
        return "must be a non-empty string"
    return "must not contain a NUL character" if "\x00" in v else None


def _opt_str(v):
    return None if v is None else _str(v)


def _opt_url(v):
    if v is None:
        return None
    from tegbatchd.api import endpoint_problem

    return _str(v) or endpoint_problem(v)


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


def _choice(*allowed):
    def check(v):
        return None if v in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _priming(v):
    """auto | off (YAML reads a bare off as false, on as true: both taken as meant)."""
    return None if isinstance(v, bool) else _choice("auto", "off")(v)


def _opt_usd(v):
    return None if v is None else _number(0, lo_open=True)(v)


_PRICE = {"input": _number(0), "output": _number(0), "cache_write": _number(0), "cache_write_1h": _number(0),
          "cache_read": _number(0)}
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
    "api": {"create_timeout_seconds": _number(0, 3600, lo_open=True), "base_url": _opt_url},
    "poll_interval_minutes": _number(0, 24 * 60, lo_open=True),
    "max_poll_interval_minutes": _number(0, 24 * 60, lo_open=True),
    "notifications": {"enabled": _bool, "stage_submitted": _bool, "open_command": _opt_str},
    "stages": {name: _STAGE for name in STAGE_NAMES},
    "prompts_dir": _opt_str,
    "prices": MapOf(_PRICE),
    "prices_as_of": _opt_day,
    "batch_discount": _number(0, 1, hi_open=True),
    "budget": {"monthly_usd": _opt_usd, "job_usd": _opt_usd},
    "cache_priming": _priming,
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


def shown(value: Any) -> str:
    """A short description of a value for an error message: never the repr of a huge value."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, (list, tuple, set)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS]) + f"... ({len(value):,} characters)"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value):,} bytes of binary data"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _key(key: Any) -> str:
    return key if isinstance(key, str) and len(key) <= SHOWN_CHARS else shown(key)


def _validate(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path or '(top level)'}: must be a mapping of keys")
            return
        for key, sub in value.items():
            where = f"{path}.{_key(key)}" if path else _key(key)
            if key not in schema:
                problems.append(f"{where}: unknown key (allowed: {', '.join(schema)})")
            else:
                _validate(sub, schema[key], where, problems)
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            problems.append(f"{path}: must be a mapping")
            return
        for key, sub in value.items():
            if not isinstance(key, str) or not key.strip():
                problems.append(f"{path}.{_key(key)}: the name must be a non-empty string")
                continue
            _validate(sub, schema.value, f"{path}.{_key(key)}", problems)
    else:
        problem = schema(value)
        if problem:
            problems.append(f"{path}: {problem} (got {shown(value)})")


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


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML this tool does not accept (duplicate keys, alias bombs, deep nesting)."""

    def __init__(self, problem: str, mark):
        super().__init__(None, None, problem, mark)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, alias bombs, deep nesting and integers too long to read."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name)",
                                                  self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if first is not key_node.start_mark:
                    raise _Refused(
                        f"duplicate key {_key(key)} (first on line {first.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"a number of {digits:,} digits", node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _check_expanded_size(root) -> None:
    """Refuse a document whose node graph, aliases expanded, is over MAX_NODES nodes, MAX_DEPTH deep, or
    recursive. Iterative and memoized: linear in the distinct nodes whatever the expansion."""
    if root is None:
        return
    size: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    stack: list[tuple[Any, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        if id(node) in size and not done:
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if not done:
            if id(node) in active:
                raise _Refused("a recursive alias", node.start_mark)
            active.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in size)
            continue
        active.discard(id(node))
        nodes = 1 + sum(size[id(c)][0] for c in children)
        depth = 1 + max((size[id(c)][1] for c in children), default=0)
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _Refused(f"aliases that expand past {MAX_NODES:,} values or "
                                              f"{MAX_DEPTH} levels", node.start_mark)
        size[id(node)] = (nodes, depth)


def load_yaml(text: str):
    """Parse YAML text with the strict loader. Raise yaml.YAMLError for anything refused."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _load_default() -> dict:
    """The shipped defaults, parsed by libyaml when it is there (our own file: the strict checks are for the
    user's; about 10x faster, on every command's start-up)."""
    loader = getattr(yaml, "CSafeLoader", None)
    text = default_text()
    return yaml.load(text, Loader=loader) if loader is not None else load_yaml(text)  # noqa: S506 - safe loader


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(f"config file {path} is {kind}", next_step="point it at a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {info.st_size:,} bytes, over the {MAX_CONFIG_BYTES:,}-byte "
                              "limit for a config file", next_step="check that it is the right file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", next_step="run `tegbatchd config init`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                          next_step="save the file as UTF-8") from None


def _read_yaml(path: Path) -> dict:
    text = _read_text(path)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "YAML not accepted" if isinstance(exc, _Refused) else "malformed YAML"
        raise ConfigError(f"{path}:{where}: {kind} ({problem})",
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


def validate_file(path: Path) -> list[str]:
    """Return every problem of a user config file as 'key.path: problem' (empty when valid)."""
    problems: list[str] = []
    _validate(_read_yaml(path), SCHEMA, "", problems)
    return problems


def load_config(path: Path | None) -> Config:
    """Given the user's config file path (may not exist), return the effective config.

    Raise ConfigError listing every problem (file and key path) when the file is invalid.
    """
    base = _load_default()
    if path is None or not (path.exists() or path.is_symlink()):  # a broken or looping link is reported
        return Config(base, None)
    user = _read_yaml(path)
    problems: list[str] = []
    _validate(user, SCHEMA, "", problems)
    if problems:
        message, details = listed(str(path), problems, f"{path}: {len(problems)} problem(s) in the configuration")
        raise ConfigError(message, next_step="fix them, then `tegbatchd config validate`",
                          details=[f"{path}: {p}" for p in details])
    return Config(_merge(base, user), path)


def redacted(data: dict) -> dict:
    """A copy safe to print: values of keys that look like secrets are replaced."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = redacted(value)
        elif any(s in key.lower() for s in ("secret", "token_value", "password")) or key.lower() == "api_key":
            out[key] = "***redacted***"
        else:
            out[key] = value
    return out
