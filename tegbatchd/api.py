"""The Anthropic API boundary: the only module that imports anthropic (lazily, it is heavy).

Maps SDK exceptions to a few errors the actions understand, never retries a create blindly, and reads
results through the SDK's streaming response line by line (its default decoder is ~7x slower).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tegbatchd.backoff import backoff
from tegbatchd.errors import UserError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "tegbatchd"
KEYRING_USER = "anthropic"
TRANSIENT_ERROR_TYPES = ("overloaded_error", "api_error", "rate_limit_error", "timeout_error")
DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_KEY_CHARS = 512
_AUTHORITY = re.compile(r"^(?:[^@/?#\[\]]*@)?(?:\[[0-9A-Fa-f:.]+(?:%[^\]]+)?\]|[^@/?#\[\]:]+)(?::[0-9]{1,5})?$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$")


class ApiError(Exception):
    """Base of the errors this module raises. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthRejected(ApiError):
    """401/403: the key was rejected. Nothing was done."""


class NotFound(ApiError):
    """404: no such batch (or its results are archived)."""


class Rejected(ApiError):
    """A definite 4xx answer: the request was refused and nothing was created."""


class BillingError(Rejected):
    """Credit exhausted or a spend limit reached: nothing is sent until the person tops up (never retried)."""


class Unavailable(ApiError):
    """Network down, 5xx, 529 or 429 after the SDK's retries: try again later."""


class Unclear(ApiError):
    """A create whose outcome is unknown (timeout, dropped connection): reconcile before any retry."""


class StreamCut(ApiError):
    """The results stream ended early; what was read is good, the rest comes on the next run."""


class NoApiKey(UserError):
    """No usable client settings: no key found or its file unusable (exit 5, as a rejected key), or
    (subclasses, exit 2) a malformed key or base URL."""

    exit_code = 5


class BadApiKey(NoApiKey):
    """The key found cannot be a key (whitespace or control characters inside, unreadable key file)."""

    exit_code = 2


class KeyFileUnusable(NoApiKey):
    """api_key_file is there but cannot be used: group or others can read it, or it cannot be read."""


class BadEndpoint(NoApiKey):
    """ANTHROPIC_BASE_URL (or api.base_url in the config) cannot be parsed as an http(s) base URL."""

    exit_code = 2


def key_problem(key: str) -> str | None:
    """Why a key (already stripped of outer whitespace) cannot be sent in a header, else None. Never
    quotes the key."""
    if len(key) > MAX_KEY_CHARS:
        return f"is {len(key):,} characters long, not a key"
    for position, char in enumerate(key, start=1):
        if char.isspace():
            name = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(char, "a space")
            return f"has {name} inside it (character {position})"
        if not 32 < ord(char) < 127:
            return f"has a control or non-ASCII character inside it (character {position})"
    return None


def _checked_key(key: str, source: str, next_step: str) -> str:
    problem = key_problem(key)
    if problem:
        raise BadApiKey(f"the API key from {source} {problem}", next_step=next_step)
    return key


def _read_key_file(path: Path) -> str:
    fix = "fix the path in your config or set ANTHROPIC_API_KEY"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BadApiKey(f"api_key_file {path} is {'a folder' if stat.S_ISDIR(info.st_mode) else 'not a file'}",
                            next_step=fix)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileUnusable(f"api_key_file {path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):o})",
                            next_step=f"run `chmod 600 {path}`")
        with path.open("rb") as fh:
            raw = fh.read(MAX_KEY_CHARS + 64)
    except OSError as exc:
        raise KeyFileUnusable(f"api_key_file {path} cannot be read ({exc.strerror})", next_step=fix) from None
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadApiKey(f"api_key_file {path} is not UTF-8 text", next_step="write only the key in it") from None


def _keyring_key() -> str:
    """The key stored in the OS keyring, or "" (keyring not installed, no backend, nothing stored)."""
    try:
        import keyring  # optional

        return (keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or "").strip()
    except Exception:  # noqa: BLE001 - keyring missing or no backend: not an error here
        return ""


def service_key_source(api_key_file: str | None) -> tuple[str | None, str | None]:
    """Where a process without ANTHROPIC_API_KEY (the service) finds a usable key: (source, None), or
    (None, why there is none). Never returns the key itself."""
    problem = "no api_key_file in the config and nothing in the OS keyring"
    if api_key_file:
        path = Path(api_key_file).expanduser()
        if not path.exists():
            problem = f"api_key_file {path} does not exist"
        else:
            try:
                key = _read_key_file(path)
            except UserError as exc:
                return None, exc.message
            if key and not key_problem(key):
                return f"api_key_file {path}", None
            problem = f"api_key_file {path} is empty" if not key else f"the key in {path} {key_problem(key)}"
    key = _keyring_key()
    if key and not key_problem(key):
        return "the OS keyring", None
    return None, problem


def resolve_api_key(api_key_file: str | None) -> str:
    """Return the API key: ANTHROPIC_API_KEY, else the config's api_key_file, else the OS keyring.

    Raise NoApiKey naming the three ways when there is none; BadApiKey (exit 2) when the key found has
    whitespace or control characters inside it, or the key file is a folder, too big or not UTF-8;
    UserError when the key file can be read by group or others or cannot be read.
    """
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if key:
        return _checked_key(key, "ANTHROPIC_API_KEY", "set ANTHROPIC_API_KEY to the key alone")
    if api_key_file:
        path = Path(api_key_file).expanduser()
        key = _read_key_file(path)
        if key:
            return _checked_key(key, f"api_key_file {path}", f"write only the key in {path}")
    key = _keyring_key()
    if key:
        return _checked_key(key, "the OS keyring", f"store it again with `keyring set {KEYRING_SERVICE} {KEYRING_USER}`")
    raise NoApiKey("no Anthropic API key found",
                   next_step="set ANTHROPIC_API_KEY, or point api_key_file in your config at a 0600 file, "
                             f"or store it with `keyring set {KEYRING_SERVICE} {KEYRING_USER}`")


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be the API's base URL (an http(s) URL with a valid host and port), else None."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "has whitespace or a control character in it"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    host = parts.hostname or ""
    if not host:
        return "names no host"
    if not _AUTHORITY.match(parts.netloc):
        return "cannot be parsed (give scheme://host[:port][/path])"
    if port == 0:
        return "has port 0"
    import ipaddress  # (imported where used: most commands never check an endpoint)

    if parts.fragment or url.endswith("#"):
        return "has a #fragment"
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return f"has an invalid IPv6 address {host!r}"
        return None
    try:
        if host.isascii():
            ascii_host = host
        else:  # IDNA 2008 (the `idna` package), as the SDK's HTTP client encodes it; the codec is IDNA 2003
            try:
                import idna
            except ImportError:  # pragma: no cover - the SDK's HTTP client depends on it
                ascii_host = host.encode("idna").decode("ascii")
            else:
                ascii_host = idna.encode(host.lower()).decode("ascii")
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
        return "has a host name that is not valid"
    if re.fullmatch(r"[0-9.]+", ascii_host):
        try:
            ipaddress.IPv4Address(ascii_host)
        except ValueError:
            return f"has an invalid IPv4 address {host!r}"
        return None
    labels = ascii_host[:-1].split(".") if ascii_host.endswith(".") else ascii_host.split(".")
    if not all(len(label) <= 63 and _HOST_LABEL.match(label) for label in labels):
        return f"has an invalid host name {host[:60]!r}"
    return None


def check_endpoint(config_value: str | None = None) -> str:
    """Return the API base URL: ANTHROPIC_BASE_URL, else config api.base_url, else the real API.

    Raise BadEndpoint (exit 2) naming where it came from when it cannot be parsed: call it before
    anything is recorded, so a URL that could never be reached is refused at once.
    """
    for source, value in (("ANTHROPIC_BASE_URL", os.environ.get("ANTHROPIC_BASE_URL")),
                          ("api.base_url in the config", config_value)):
        if value:
            problem = endpoint_problem(value)
            if problem:
                shown = value if len(value) <= 80 else value[:80] + "..."
                raise BadEndpoint(f"{source} {shown!r} {problem}",
                                  next_step=f"fix {source} (e.g. https://api.anthropic.com or http://127.0.0.1:8080)")
            return value
    return DEFAULT_BASE_URL


class ClockReading(NamedTuple):
    """The server's time (its `Date` header; None when it sent none) and the local time it was read at."""

    local: datetime
    server: datetime | None


class ListPage(NamedTuple):
    batches: list[dict]
    has_more: bool
    last_id: str | None
    clock: ClockReading


def server_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware datetime (None when absent or unreadable)."""
    if not value:
        return None
    from email.utils import parsedate_to_datetime  # (imported where used: `list` reads no header)

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(value)


def batch_to_dict(batch: Any) -> dict:
    """An SDK MessageBatch as a plain dict with ISO timestamps (what the store records)."""
    counts = batch.request_counts
    return {
        "id": batch.id,
        "processing_status": batch.processing_status,
        "request_counts": {k: int(getattr(counts, k) or 0)
                           for k in ("processing", "succeeded", "errored", "canceled", "expired")},
        "created_at": _iso(batch.created_at),
        "expires_at": _iso(batch.expires_at),
        "ended_at": _iso(batch.ended_at),
        "archived_at": _iso(batch.archived_at),
        "cancel_initiated_at": _iso(batch.cancel_initiated_at),
        "results_url": batch.results_url,
    }


def _is_billing(exc: Exception, detail: str) -> bool:
    """A spend limit (`error_code: enforced_spend_limit_reached`) or an exhausted credit balance."""
    body = getattr(exc, "body", None)
    code = ""
    if isinstance(body, dict):
        found = body.get("error")
        inner: dict = found if isinstance(found, dict) else body
        found_details = inner.get("details")
        details: dict = found_details if isinstance(found_details, dict) else {}
        code = str(details.get("error_code") or inner.get("error_code") or body.get("error_code") or "")
    text = f"{code} {detail}".lower()
    return "enforced_spend_limit" in text or "credit balance" in text or "spend limit" in text


@functools.cache
def _tls_context() -> Any:
    """The TLS context the SDK's HTTP client would make by default (system CAs, SSL_CERT_* honoured), made
    once per process: loading the CA bundle costs 0.1-0.4 s, which every client made after the first (the
    daemon's polls, the commands a test runs in one process) would pay again."""
    import httpx2

    return httpx2.create_ssl_context()


class BatchApi:
    """A thin client for the Message Batches API over the real SDK.

    `base_url` defaults to check_endpoint(): ANTHROPIC_BASE_URL (how tests and the demo reach the
    emulator), else the real API.
    """

    def __init__(self, api_key: str, base_url: str | None = None, *, max_retries: int = 2,
                 timeout: float = 120.0, create_timeout: float = 300.0):
        import anthropic  # heavy: only when there is API work to do

        self._anthropic = anthropic
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url or check_endpoint(),
                                          max_retries=max_retries, timeout=timeout,
                                          http_client=anthropic.DefaultHttpxClient(verify=_tls_context()))
        self.create_timeout = create_timeout
        self.calls = 0

    @property
    def endpoint(self) -> str:
        return str(self.client.base_url)

    # --- error mapping ----------------------------------------------------------------------------
    def _map(self, exc: Exception, *, creating: bool = False) -> ApiError:
        a = self._anthropic
        if isinstance(exc, a.APIStatusError):
            status = exc.status_code
            detail = getattr(exc, "api_message", None) or str(exc)
            if status in (401, 403):
                return AuthRejected("the API key was rejected", status)
            if _is_billing(exc, detail):
                return BillingError(f"the API refused it for billing ({status}: {detail})", status)
            if status == 404:
                return NotFound(detail, status)
            if status in (408, 409, 429) or status >= 500:
                return Unavailable(f"the API answered {status} ({detail})", status)
            return Rejected(f"the API refused the request ({status}: {detail})", status)
        if isinstance(exc, a.APIConnectionError):  # includes APITimeoutError
            if creating:
                return Unclear(f"no answer to the create ({type(exc).__name__})")
            return Unavailable(f"the API is unreachable ({type(exc).__name__})")
        return Unavailable(f"{type(exc).__name__}: {exc}")

    def _call(self, fn, *args, creating: bool = False, **kwargs):
        self.calls += 1
        try:
            return fn(*args, **kwargs)
        except self._anthropic.APIError as exc:
            raise self._map(exc, creating=creating) from exc

    # --- endpoints --------------------------------------------------------------------------------
    def create(self, body: bytes) -> dict:
        """Create a batch from a ready JSON body (`{"requests": [...]}` bytes, never re-parsed here).

        Never retried on an unclear outcome (timeout, dropped connection): raise Unclear instead.
        A 429/5xx answer means nothing was created, so those are retried a few times.
        """
        from anthropic.types.messages import MessageBatch

        client = self.client.with_options(max_retries=0, timeout=self.create_timeout)
        last: ApiError | None = None
        for attempt in range(3):
            try:
                batch = self._call(client.post, "/v1/messages/batches", cast_to=MessageBatch, content=body,
                                   options={"headers": {"Content-Type": "application/json"}}, creating=True)
                return batch_to_dict(batch)
            except Unavailable as exc:
                last = exc
                if exc.status is None:
                    raise
                time.sleep(backoff(attempt + 1, first=0.5, cap=4.0))
        assert last is not None
        raise last

    def retrieve(self, batch_id: str) -> dict:
        return batch_to_dict(self._call(self.client.messages.batches.retrieve, batch_id))

    def list_page(self, *, limit: int = 100, after_id: str | None = None) -> ListPage:
        """One page of batches, newest first: (batches, has_more, last_id, clock), clock being the server's
        `Date` header and the local time it was read at."""
        kwargs: dict[str, Any] = {"limit": limit}
        if after_id:
            kwargs["after_id"] = after_id
        raw = self._call(self.client.messages.batches.with_raw_response.list, **kwargs)
        clock = ClockReading(datetime.now(UTC), server_date(raw.headers.get("date")))
        page = raw.parse()
        return ListPage([batch_to_dict(b) for b in page.data], bool(page.has_more), page.last_id, clock)

    def cancel(self, batch_id: str) -> dict:
        return batch_to_dict(self._call(self.client.messages.batches.cancel, batch_id))

    def result_lines(self, batch_id: str) -> Iterator[bytes]:
        """Yield the raw JSONL lines of an ended batch's results (blank lines dropped, CRLF tolerated).

        Raise StreamCut when the connection drops mid-stream (after yielding what arrived).
        """
        a = self._anthropic
        self.calls += 2  # the SDK retrieves the batch, then downloads results_url
        streaming = False
        try:
            with self.client.messages.batches.with_streaming_response.results(batch_id) as response:
                streaming = True
                pieces: list[bytes] = []  # the unfinished line: joined once it ends, so a long line stays linear
                for chunk in response.iter_bytes():  # as received: a sized chunker drops its buffer on a cut
                    pieces.append(chunk)
                    if b"\n" not in chunk:
                        continue
                    lines = b"".join(pieces).split(b"\n")
                    pieces = [lines.pop()]
                    for line in lines:
                        line = line.rstrip(b"\r")
                        if line.strip():
                            yield line
                rest = b"".join(pieces)
                if rest.strip():
                    yield rest.rstrip(b"\r")
        except a.APIConnectionError as exc:  # SDK >= 2.17 wraps a failed body read of its own decoders so
            if streaming:                      # (a dropped or timed-out read once the answer has begun)
                raise StreamCut(f"the results stream was cut ({type(exc).__name__})") from exc
            raise self._map(exc) from exc
        except a.APIError as exc:
            raise self._map(exc) from exc
        except Exception as exc:  # a raw streaming response's transport errors are not wrapped by the SDK
            if type(exc).__module__.startswith(("httpx", "httpcore", "h11")):
                raise StreamCut(f"the results stream was cut ({type(exc).__name__})") from exc
            raise

    def model(self, model_id: str) -> dict:
        """What the Models API says of a model id: {id, lifecycle (active | deprecated | retired), retires_at,
        max_tokens, line}. NotFound when the API does not know it."""
        return _model_dict(self._call(self.client.models.retrieve, model_id))

    def probe(self) -> tuple[int, datetime | None]:
        """One cheap call (GET /v1/models?limit=1, no retry): (HTTP status, the answer's Date header).
        A 401/403 is returned, not raised (the endpoint answered); Unavailable when nothing answered."""
        from email.utils import parsedate_to_datetime

        client = self.client.with_options(max_retries=0)
        self.calls += 1
        try:
            response = client.models.with_raw_response.list(limit=1)
            status, headers = response.status_code, response.headers
        except self._anthropic.APIStatusError as exc:
            status, headers = exc.status_code, exc.response.headers
        except self._anthropic.APIError as exc:
            raise self._map(exc) from exc
        try:
            date = parsedate_to_datetime(headers["date"]) if headers.get("date") else None
        except (TypeError, ValueError):
            date = None
        return status, date

    def models(self) -> list[dict]:
        """Every model the key can use (active and deprecated), newest first."""
        return [_model_dict(m) for m in self._call(self.client.models.list, limit=1000)]

    def message(self, params: dict, *, timeout: float | None = None) -> dict:
        """One standard Messages API call (for --now); retries are the caller's."""
        client = self.client.with_options(max_retries=0, timeout=timeout or self.client.timeout)
        msg = self._call(client.messages.create, **params)
        return msg.model_dump(mode="json")


def _model_dict(info: Any) -> dict:
    return {"id": info.id, "lifecycle": getattr(info, "lifecycle", None) or "active",
            "retires_at": _iso(getattr(info, "retires_at", None)), "max_tokens": getattr(info, "max_tokens", None),
            "line": getattr(info, "line", None)}


def sdk_models() -> tuple[list[str], dict[str, str]]:
    """(the model ids the installed SDK lists, deprecated id → end-of-life date) from the SDK's own data."""
    import typing

    import anthropic.types

    ids = [a for a in typing.get_args(typing.get_args(anthropic.types.Model)[0]) if isinstance(a, str)] \
        if typing.get_args(anthropic.types.Model) else []
    try:
        from anthropic._data.deprecated_models import DEPRECATED_MODELS
    except ImportError:  # an SDK without the table
        DEPRECATED_MODELS = {}
    return ids, dict(DEPRECATED_MODELS)


def message_param_names() -> frozenset[str]:
    """The top-level params the installed SDK's Messages API types declare (plus the sampling ones)."""
    from anthropic.types import message_create_params

    names = set(message_create_params.MessageCreateParamsBase.__annotations__)
    return frozenset(names | {"temperature", "top_p", "top_k", "stream"})
