"""Submitting requests: validate, split at the batch limits, archive, record the intent, then create.

Intent before create: the requests are archived in the state dir and an intent row is recorded before
the API is called; the batch id is recorded after. An unclear create leaves the intent open, and the
next run reconciles it with the batches that exist instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tegbatchd import api as api_mod
from tegbatchd.caching import estimate_item
from tegbatchd.engine.states import ARCHIVE_MISSING, CREATE_REFUSED, IntentState
from tegbatchd.errors import InputError, listed
from tegbatchd.locks import file_lock
from tegbatchd.outputs import OutputResolver, render_output
from tegbatchd.paths import ensure_dir, write_private
from tegbatchd.store import PlannedIntent

log = logging.getLogger(__name__)

SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")  # \ud800-\udfff in a JSON string
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BYTES_MARGIN = 0.95           # keep each batch body this far below the byte limit
ENVELOPE = len(b'{"requests":[]}')
RECONCILE_SKEW = timedelta(minutes=5)  # on the server's clock: Date's 1 s steps, latency, a clock corrected since
MAX_LISTED_ERRORS = 12
MAX_KEPT_PROBLEMS = 1000          # past this, problems are counted, not kept
MAX_LINE_BYTES = 256_000_000      # the API's limit for a whole batch: no one request can be bigger
MAX_JSON_DEPTH = 64               # a Messages request is ~8 deep; json and the SDK recurse per level
_PAIRS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
TAG_CHARS = 8                     # an intent's tag: 8 hex characters, random (unique to the intent)
_KEEP = 64 - 1 - TAG_CHARS        # a custom_id this long or shorter is sent whole: "<custom_id>-<tag>"
_KEY = b'"custom_id"'
_ID_FIRST = re.compile(rb'\{\s*"custom_id"\s*:\s*"')
_ID_VALUE = re.compile(rb'"custom_id"\s*:\s*"')
_ID_LAST = re.compile(rb'"\s*\}\s*$')
_DUMP_HEAD = len(b'{"custom_id":"')


def new_tag() -> str:
    """A fresh intent tag (what makes every custom_id it sends unique to it)."""
    return secrets.token_hex(TAG_CHARS // 2)


def sent_id(custom_id: str, tag: str | None) -> str:
    """The custom_id sent to the API for a request of the intent with this tag: "<custom_id>-<tag>", the
    readable part cut and a hash of it added when it would not fit in 64 characters. No tag: as it is."""
    if tag is None:
        return custom_id
    if len(custom_id) <= _KEEP:
        return f"{custom_id}-{tag}"
    digest = hashlib.sha256(custom_id.encode()).hexdigest()[:8]
    return f"{custom_id[:_KEEP - 9]}-{digest}-{tag}"


def id_offset(line: bytes, custom_id: str) -> int | None:
    """Where the value of a request line's top-level custom_id starts, when it is written once, literally,
    as the object's first or last key (so it can be swapped for the sent id without a second dump)."""
    if line.count(_KEY) != 1:
        return None
    first = _ID_FIRST.match(line)
    if first:
        at = first.end()
    else:
        found = _ID_VALUE.search(line, line.find(_KEY))
        if found is None:
            return None
        at = found.end()
        if not _ID_LAST.match(line, at + len(custom_id)):
            return None
    end = at + len(custom_id)
    return at if line[at:end] == custom_id.encode() and line[end:end + 1] == b'"' else None


@dataclass
class Item:
    """One validated request: its JSON line (custom_id written at line[id_at:id_at + id_len]) and where its
    answer goes. The line archived and sent carries the intent's sent id there instead."""

    custom_id: str
    line: bytes
    output: str          # the absolute output path
    model: str | None
    max_tokens: int | None
    id_at: int = _DUMP_HEAD
    id_len: int = field(default=-1)
    shape: Any = field(default=None, repr=False, compare=False)  # its estimate (caching.item_shape), once

    def __post_init__(self) -> None:
        if self.id_len < 0:
            self.id_len = len(self.custom_id)

    def sent_line(self, sent: str) -> bytes:
        return self.line[:self.id_at] + sent.encode() + self.line[self.id_at + self.id_len:]

    def sent_cost(self) -> int:
        """Bytes of its line in a create body, with the sent id and the comma."""
        return len(self.line) - self.id_len + min(len(self.custom_id) + 1 + TAG_CHARS, 64) + 1


def _dump(custom_id: str, params: dict) -> bytes:
    return json.dumps({"custom_id": custom_id, "params": params}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _item(custom_id: str, params: dict, output: str, raw: bytes | None = None, id_at: int = _DUMP_HEAD) -> Item:
    """raw: the request's own line when it holds nothing else (archived as it came: no second dump)."""
    line = raw if raw is not None else _dump(custom_id, params)
    max_tokens = params.get("max_tokens")
    return Item(custom_id, line, output, params.get("model"),
                max_tokens if isinstance(max_tokens, int) else None, id_at if raw is not None else _DUMP_HEAD)


def archived_item(line: bytes, written_id: str, custom_id: str, output: str, model: str | None,
                  max_tokens: int | None) -> Item:
    """An Item from an archived line whose custom_id is written_id (the sent id of an earlier attempt)."""
    at = id_offset(line, written_id)
    if at is None:
        obj = json.loads(line)
        line, at, written_id = _dump(custom_id, obj["params"]), _DUMP_HEAD, custom_id
    return Item(custom_id, line, output, model, max_tokens, at, len(written_id))


def _raise_problems(source: str, problems: list[str], next_step: str, total: int | None = None) -> None:
    if problems:
        total = max(total or 0, len(problems))
        shown = problems[:MAX_LISTED_ERRORS]
        if total > len(shown):
            shown.append(f"... and {total - len(shown)} more")
        message, details = listed(str(source), shown, f"{source}: {total} problem(s); nothing was sent",
                                  "; nothing was sent")
        raise InputError(message, next_step=next_step, details=details)


def _shown(value) -> str:
    """A bad value for an error message, never the repr of a huge one."""
    if isinstance(value, (dict, list)):
        return f"({type(value).__name__} of {len(value)})"
    text = repr(value[:80] if isinstance(value, str) else value)
    return text if len(text) <= 70 else text[:70] + "..."


def _too_deep(raw: bytes) -> bool:
    """True when the JSON text nests arrays/objects more than MAX_JSON_DEPTH deep (brackets in strings
    ignored). Checked before json.loads, which recurses once per level. In C-speed passes: each pass
    drops every innermost pair, so the passes needed are the nesting height."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    # Outside strings: drop escaped backslashes, then escaped quotes; what is left between the remaining
    # quotes is string content (valid JSON has no backslash outside a string).
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(plain.split(b'"')[::2]).translate(_PAIRS, _NOT_BRACKETS)
    for passes in range(MAX_JSON_DEPTH + 1):
        inner = brackets.replace(b"()", b"")
        if not inner:  # the height was passes + 1
            return passes + 1 > MAX_JSON_DEPTH
        if inner == brackets:  # unbalanced (malformed): what is left open adds to the height
            return passes + inner.count(b"(") > MAX_JSON_DEPTH
        brackets = inner
    return True


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _decoder() -> tuple[Callable[[str], object], list[bool]]:
    """A strict JSON decoder (no NaN/Infinity) for one file's lines, and a flag it sets when a float parses
    infinite (1e999: valid JSON, refused by the API), so params need no second walk to check them."""
    infinite = [False]

    def parse_float(text: str) -> float:
        value = float(text)
        if value in (math.inf, -math.inf):
            infinite[0] = True
        return value

    return json.JSONDecoder(parse_constant=_refuse_constant, parse_float=parse_float).decode, infinite


def _parse_line(raw: bytes, decode: Callable[[str], object]) -> tuple[object, str | None]:
    """One JSONL line → (object, None), or (None, why it is not valid JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text at byte {exc.start + 1}"
    if _too_deep(raw):
        return None, f"nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        return decode(text), None
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
        return None, str(exc).split(":")[0]
    except RecursionError:  # not reached after _too_deep; kept so a deep line can never stop the run
        return None, "nested too deep"


def _lines(fh):
    """(number, bytes) per line, reading at most MAX_LINE_BYTES of any one line: a longer line is
    yielded as None (and skipped to its end), so a file with no newline never fills memory."""
    limit = MAX_LINE_BYTES
    number = 0
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = fh.readline(1 << 20)
            yield number, None
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark (Windows editors write one)
        yield number, raw


def _params_problem(params: dict) -> str | None:
    missing = [k for k in ("model", "max_tokens", "messages") if k not in params]
    if missing:
        return f"params lacks {', '.join(missing)}"
    if not isinstance(params["model"], str) or not params["model"].strip():
        return f"params.model must be a model name (got {_shown(params['model'])})"
    tokens = params["max_tokens"]
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        return f"params.max_tokens must be a whole number of at least 1 (got {_shown(tokens)})"
    if not isinstance(params["messages"], list) or not params["messages"]:
        return f"params.messages must be a non-empty list (got {_shown(params['messages'])})"
    return None


def read_requests_file(path: Path, template: str, data_root: Path,
                       on_params: Callable[[str, dict, bool], None] | None = None) -> list[Item]:
    """Read and validate a JSONL file of {"custom_id", "params"} lines (on_params: given each valid
    request's custom_id, params and whether its floats are all finite as it is read: parsed once).

    Raise InputError naming the offending line numbers (bad JSON, missing fields, invalid or duplicate
    custom_ids, outputs escaping the data root or shared by two requests) before anything is sent.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path} is a folder, not a requests file", next_step="give the JSONL file itself")
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
            raise InputError(f"{path} is not a regular file", next_step="give a JSONL file")
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", next_step="check the file name") from None
    items: list[Item] = []
    problems: list[str] = []
    total = 0
    seen: dict[str, int] = {}
    outputs: dict[str, int] = {}
    resolver = OutputResolver(data_root)
    decode, infinite = _decoder()

    def problem(text: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_KEPT_PROBLEMS:
            problems.append(text)

    with fh:
        for number, raw in _lines(fh):
            if raw is None:
                problem(f"line {number}: over {MAX_LINE_BYTES:,} bytes, larger than a whole batch may be")
                continue
            if not raw.strip():
                continue
            infinite[0] = False
            obj, why = _parse_line(raw, decode)
            if why:
                problem(f"line {number}: not valid JSON ({why})")
                continue
            if not isinstance(obj, dict) or "custom_id" not in obj or "params" not in obj:
                problem(f"line {number}: needs an object with \"custom_id\" and \"params\"")
                continue
            cid, params = obj["custom_id"], obj["params"]
            if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
                problem(f"line {number}: custom_id {_shown(cid)} must be 1-64 of a-z A-Z 0-9 _ -")
                continue
            if cid in seen:
                problem(f"line {number}: custom_id {cid!r} repeats line {seen[cid]}")
                continue
            seen[cid] = number
            if not isinstance(params, dict):
                problem(f"line {number}: params must be an object")
                continue
            bad = _params_problem(params)
            if bad:
                problem(f"line {number}: {bad}")
                continue
            try:
                output = resolver.resolve(render_output(template, custom_id=cid, index=len(items)))
            except InputError as exc:
                problem(f"line {number}: {exc.message}")
                continue
            if output in outputs:
                problem(f"line {number}: output {output} is also line {outputs[output]}'s")
                continue
            line = raw.strip()
            at = id_offset(line, cid) if len(obj) == 2 and raw[:1] == b"{" and b"\x00" not in raw else None
            as_came = at is not None   # archived as it came, the sent id put in place of the custom_id
            try:
                if as_came and SURROGATE_ESCAPE.search(raw):  # what a dump would refuse, refused here too
                    json.dumps(obj, ensure_ascii=False).encode("utf-8")
                item = _item(cid, params, output, line if as_came else None, at or _DUMP_HEAD)
            except UnicodeEncodeError as exc:
                problem(f"line {number}: holds a lone surrogate ({exc.object[exc.start]!r} escaped), "
                        "which is not valid Unicode")
                continue
            item.shape = estimate_item(item.line, item.model, item.max_tokens, params)  # (params in hand)
            outputs[output] = number
            items.append(item)
            if on_params is not None:
                on_params(cid, params, not infinite[0])
    _raise_problems(str(path), problems, "fix the file and submit again", total)
    if not items:
        raise InputError(f"{path} holds no requests", next_step="add one JSON object per line")
    return items


def with_params(item: Item, params: dict) -> Item:
    """The same request (custom_id, output) with other params."""
    return _item(item.custom_id, params, item.output)


def items_from_plan(planned, data_root: Path) -> list[Item]:
    """Validate planned requests (objects with custom_id, params, output relative to the data root)."""
    items, problems, seen = [], [], set()
    resolver = OutputResolver(data_root)
    for req in planned:
        if not CUSTOM_ID.match(req.custom_id) or req.custom_id in seen:
            problems.append(f"custom_id {req.custom_id!r} is invalid or repeated")
            continue
        seen.add(req.custom_id)
        items.append(_item(req.custom_id, req.params, resolver.resolve(req.output)))
    _raise_problems("planned requests", problems, "this is a bug in the report builder; please report it")
    return items


def refuse_oversized(items: list[Item], max_bytes: int) -> int:
    """Raise InputError when a single request is larger than a batch may be; return the byte budget."""
    budget = int(max_bytes * BYTES_MARGIN) - ENVELOPE
    for item in items:
        cost = item.sent_cost()
        if cost > budget:
            raise InputError(f"request {item.custom_id!r} is {cost:,} bytes, over the {budget:,}-byte batch budget",
                             next_step="shorten it or raise batch_limits.max_bytes (at most 256 MB)")
    return budget


def _bounds(items: Sequence[Item], max_requests: int, budget: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch: within the request and byte limits, in order."""
    bounds: list[tuple[int, int]] = []
    start = size = 0
    for index, item in enumerate(items):
        cost = item.sent_cost()
        if index > start and (index - start >= max_requests or size + cost > budget):
            bounds.append((start, index))
            start, size = index, 0
        size += cost
    if items:
        bounds.append((start, len(items)))
    return bounds


def split(items: list[Item], max_requests: int, max_bytes: int) -> list[list[Item]]:
    """Split items into batches within the request and byte limits (with a safety margin).

    Raise InputError when a single request is larger than a batch may be.
    """
    budget = refuse_oversized(items, max_bytes)
    return [items[lo:hi] for lo, hi in _bounds(items, max_requests, budget)]


@dataclass
class ArchivePart:
    """One batch's worth of request lines, archived: items[start:stop] went into it, each with the custom_id
    sent_ids[i] (the readable custom_id and the part's tag)."""

    archive: str
    byte_size: int
    start: int
    stop: int
    tag: str
    sent_ids: list[str]


def _sent_ids(items: Sequence[Item], tag: str) -> list[str]:
    ids = [sent_id(i.custom_id, tag) for i in items]
    if any(len(i.custom_id) > _KEEP for i in items) and len(set(ids)) != len(ids):  # a cut id met another
        raise InputError("two custom_ids are the same once cut to fit the intent tag",
                         next_step="make the custom_ids differ within their first 46 characters")
    return ids


def archive_group(archive_dir: Path, prefix: str, items: Sequence[Item], limits) -> list[ArchivePart]:
    """Split items at the batch limits and archive each part (0600) under a fresh name, each line with its
    sent custom_id (a fresh tag per part): the archive holds exactly the bytes its create sends.

    Written before anything is recorded: a crash after it leaves an unused file, never a half record."""
    parts: list[ArchivePart] = []
    budget = int(limits["max_bytes"] * BYTES_MARGIN) - ENVELOPE
    for lo, hi in _bounds(items, limits["max_requests"], budget):
        tag = new_tag()
        chunk = items[lo:hi]
        ids = _sent_ids(chunk, tag)
        archive = archive_dir / f"{prefix}-{tag}.jsonl"
        write_private(archive, (item.sent_line(sent) + b"\n" for item, sent in zip(chunk, ids, strict=True)))
        parts.append(ArchivePart(str(archive), archive.stat().st_size, lo, hi, tag, ids))
    return parts


def archive_intents(ctx, job_id: str, stage: dict, items: list[Item]) -> list[PlannedIntent]:
    """Archive a stage's items, one archive per batch, and return the intents to record (no API call)."""
    limits = ctx.config["batch_limits"]
    refuse_oversized(items, limits["max_bytes"])  # archive_group splits; this only refuses what cannot fit
    archive_dir = ensure_dir(ctx.paths.archive_dir)
    parts = archive_group(archive_dir, f"{job_id}-s{stage['seq']}", items, limits)
    return [PlannedIntent(part.archive, part.byte_size,
                          rows=[(i.custom_id, str(i.output), i.model, i.max_tokens) for i in items[part.start:part.stop]],
                          tag=part.tag, sent_ids=part.sent_ids)
            for part in parts]


def _body(archive: Path) -> bytes:
    """The create body `{"requests":[...]}` from an archive, built with a single join (the archive of a
    big batch is hundreds of MB: each extra copy counts)."""
    with archive.open("rb") as fh:
        lines = [line.rstrip(b"\r\n") for line in fh if line.strip()]
    lines[0] = b'{"requests":[' + lines[0]
    lines[-1] += b"]}"
    return b",".join(lines)


@dataclass
class SendResult:
    intent_id: int
    batch: dict | None = None
    state: str = "created"      # created | open (unclear/unavailable: reconciled later) | failed
    message: str = ""


def send_intent(ctx, client, intent_id: int) -> SendResult:
    """Create the batch of an open intent, under the intent's lock.

    Unclear outcome or API unavailable: the intent stays open for reconcile(). A definite refusal: the
    intent fails, its requests become failures of kind create_refused (retry can send them again). Its
    archive gone: the intent fails (archive_missing). A rejected key (AuthRejected) or a billing refusal
    (BillingError) is raised with the intent left open, to be sent once the cause is fixed.
    """
    with file_lock(ctx.paths.lock_dir / f"intent-{intent_id}.lock"):
        intent = ctx.store.get_intent(intent_id)
        if intent is None or intent["state"] != IntentState.OPEN:
            return SendResult(intent_id, None, intent["state"] if intent else "missing", "already handled")
        try:
            body = _body(Path(intent["archive"]))
        except (OSError, IndexError) as exc:
            reason = f"its archived requests {intent['archive']} cannot be read ({type(exc).__name__})"
            ctx.store.fail_intent(intent_id, reason, ARCHIVE_MISSING)
            return SendResult(intent_id, None, "failed", reason)
        ctx.store.mark_attempted(intent_id)
        try:
            batch = client.create(body)
        except api_mod.Unclear as exc:
            ctx.store.add_event("unclear_create", f"intent {intent_id}: {exc}; will reconcile")
            return SendResult(intent_id, None, "open", f"{exc}: it will be reconciled, never sent twice")
        except api_mod.Unavailable as exc:
            ctx.store.add_event("create_deferred", f"intent {intent_id}: {exc}")
            return SendResult(intent_id, None, "open", f"{exc}: it will be sent by the next poll")
        except (api_mod.AuthRejected, api_mod.BillingError):
            raise  # the intent stays open: sent once the key or the balance is fixed
        except api_mod.ApiError as exc:
            ctx.store.fail_intent(intent_id, str(exc), CREATE_REFUSED)
            return SendResult(intent_id, None, "failed", str(exc))
        ctx.store.attach_batch(intent_id, batch)
        return SendResult(intent_id, batch, "created", "")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def on_server_clock(local_time: datetime, local_now: datetime, server_now: datetime | None) -> datetime:
    """A time read on this machine's clock, on the server's: shifted by how far the server's clock (its
    `Date` header, server_now) was from ours (local_now) at the same moment. No Date header: unchanged."""
    if server_now is None:
        return local_time
    return local_time + (server_now - local_now)


def reconcile(ctx, client, blocked: list[tuple[str, str]] | None = None, *,
              intents: list[dict] | None = None) -> list[str]:
    """Settle open intents (all, or the given ones): attach the batch a lost create made, else create it
    now. Returns messages; (job id, reason) of creates refused for billing are added to `blocked`.

    A batch attached so is marked `reconciled`: retrieval reads its custom_ids before writing anything of it, and
    one that is not exactly the intent's is recorded as foreign and the intent sent again."""
    messages: list[str] = []
    blocked = blocked if blocked is not None else []
    for intent in ctx.store.open_intents(moving_only=True) if intents is None else intents:
        with file_lock(ctx.paths.lock_dir / f"intent-{intent['id']}.lock", wait=0) as mine:
            if not mine:
                continue  # another process is creating it right now
            fresh = ctx.store.get_intent(intent["id"])
            if fresh["state"] != "open":
                continue
            # never attempted (a process died between recording and creating): it exists nowhere, so it is
            # sent, never matched: matching it could adopt another intent's batch of the same size
            match = _find_created(ctx, client, fresh) if fresh["attempted_at"] else None
            if match:
                ctx.store.attach_batch(fresh["id"], match, reconciled=True)
                ctx.store.add_event("reconciled", f"intent {fresh['id']} → {match['id']}",
                                    job_id=intent["job_id"], batch_id=match["id"])
                messages.append(f"reconciled an unclear submission with batch {match['id']}")
                continue
        try:
            result = send_intent(ctx, client, intent["id"])
        except api_mod.BillingError as exc:
            messages.append(f"intent {intent['id']}: {exc}")
            blocked.append((intent["job_id"], str(exc)))
            continue
        if result.batch:
            messages.append(f"submitted batch {result.batch['id']} ({fresh['request_count']} requests)")
    return messages


def _find_created(ctx, client, intent: dict) -> dict | None:
    """A batch on the API, unknown to the store (and not found foreign to this intent), created since the
    intent's create was attempted (on the server's clock), with the same request count."""
    attempted = _parse(intent["attempted_at"] or intent["created_at"])
    known = ctx.store.known_batch_ids() | ctx.store.foreign_batch_ids(intent["id"])
    after = None
    while True:
        page, has_more, after, clock = client.list_page(limit=100, after_id=after)
        since = on_server_clock(attempted, clock.local, clock.server) - RECONCILE_SKEW
        candidates = []
        for batch in page:
            if _parse(batch["created_at"]) < since:
                has_more = False
                break
            if batch["id"] not in known and sum(batch["request_counts"].values()) == intent["request_count"]:
                candidates.append(batch)
        if candidates:
            return min(candidates, key=lambda b: b["created_at"])  # the earliest after the intent
        if not has_more or not after:
            return None
