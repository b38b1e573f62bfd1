"""The HTTP server: routing, authentication, the anthropic-version header and call-level faults in front of
the endpoints."""

from __future__ import annotations

import socket
import socketserver
import threading
from datetime import date
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tegbatchd.emulator import admin, api
from tegbatchd.emulator.faults import FaultPlan
from tegbatchd.emulator.models import Catalogue, day_of, load_catalogue
from tegbatchd.emulator.options import API_VERSIONS, Options
from tegbatchd.emulator.replay import ReplaySource
from tegbatchd.emulator.state import BatchStore
from tegbatchd.emulator.stats import Stats
from tegbatchd.emulator.transport import BadBody, BodyTooLarge, TransportHandler

API_ROOT = "/v1/messages"
MODELS_ROOT = "/v1/models"
ADMIN_ROOT = "/_emulator/"
ADMIN_BODY_LIMIT = 1024 * 1024

# (path shape, method) -> endpoint name; shapes: "" (/v1/messages), "batches", "batches/ID", "batches/ID/x"
ROUTES = {
    ("", "POST"): "messages",
    ("batches", "POST"): "create",
    ("batches", "GET"): "list",
    ("batches/ID", "GET"): "retrieve",
    ("batches/ID", "DELETE"): "delete",
    ("batches/ID/cancel", "POST"): "cancel",
    ("batches/ID/results", "GET"): "results",
    ("models", "GET"): "models",
    ("models/ID", "GET"): "model",
}


def _shape(rest: str) -> tuple[str, str | None] | None:
    """Split what follows /v1/messages into (shape, batch id), or None when it is no API path."""
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    if not parts:
        return "", None
    if parts[0] != "batches" or len(parts) > 3:
        return None
    if len(parts) == 1:
        return "batches", None
    if len(parts) == 3 and parts[2] not in ("cancel", "results"):
        return None
    return "batches/ID" + (f"/{parts[2]}" if len(parts) == 3 else ""), unquote(parts[1])


class Handler(TransportHandler):
    server: EmulatorServer
    base_url = ""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header follows the emulated clock (`/_emulator/advance` moves it, as a skewed clock would)."""
        return super().date_time_string(self.server.store.clock.now() if timestamp is None else timestamp)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self.dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self.dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self.dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self.dispatch("PATCH")

    def dispatch(self, method: str) -> None:
        self.new_request_id()
        split = urlsplit(self.path)
        path = split.path
        if ADMIN_ROOT in path:
            body = self.body_or_refuse(ADMIN_BODY_LIMIT)
            if body is not None:
                admin.handle(self, method, path[path.index(ADMIN_ROOT) + len(ADMIN_ROOT):], body)
            return
        at = path.find(API_ROOT)
        shape = _shape(path[at + len(API_ROOT):]) if at >= 0 else None
        if at < 0 and MODELS_ROOT in path:
            at = path.find(MODELS_ROOT)
            rest = path[at + len(MODELS_ROOT):].strip("/")
            shape = ("models", None) if not rest else ("models/ID", unquote(rest)) if "/" not in rest else None
        if shape is None:
            if self.body_or_refuse(self.server.opts.max_body_bytes) is not None:
                self.send_error_json(404, "not_found_error", f"Not found: {method} {path}")
            return
        endpoint = ROUTES.get((shape[0], method))
        if endpoint is None:
            if self.body_or_refuse(self.server.opts.max_body_bytes) is not None:
                self.send_error_json(405, "invalid_request_error", f"Method {method} not allowed on {path}")
            return
        host = self.headers.get("Host") or self.server.host_port
        self.base_url = f"http://{host}{path[:at]}"
        self.serve_api(endpoint, shape[1], split.query)

    def serve_api(self, endpoint: str, batch_id: str | None, query: str) -> None:
        server = self.server
        server.stats.call(endpoint)
        limit = server.opts.max_messages_body_bytes if endpoint == "messages" else server.opts.max_body_bytes
        body = self.body_or_refuse(limit)
        if body is None:
            return
        fault = server.faults.fault_for_call()
        if fault is not None:
            server.stats.fault_injected()
            self.send_error_json(fault.status, fault.error_type, fault.message,
                                 headers={"retry-after": server.opts.fault_retry_after})
            return
        refusal = self.auth_problem()
        if refusal is not None:
            self.send_error_json(401, "authentication_error", refusal)
            return
        version = self.headers.get("anthropic-version")
        if version is None or version.strip() not in API_VERSIONS:
            self.send_error_json(400, "invalid_request_error",
                                 "anthropic-version: header is required" if version is None else
                                 f"anthropic-version: {version!r} is not a valid version "
                                 f"(accepted: {', '.join(API_VERSIONS)})")
            return
        try:
            if endpoint in ("create", "messages"):
                getattr(api, endpoint)(self, body)
            elif endpoint == "list":
                api.list_batches(self, query)
            elif endpoint == "models":
                api.list_models(self, query)
            elif endpoint == "model":
                api.retrieve_model(self, batch_id or "")
            else:
                getattr(api, endpoint)(self, batch_id)
        except api.ApiError as exc:
            self.send_error_json(exc.status, exc.error_type, exc.message, headers=exc.headers,
                                 error_code=exc.error_code)

    def body_or_refuse(self, limit: int) -> bytes | None:
        """Return the body, or answer 413/400 (closing the connection) and return None."""
        try:
            return self.read_body(limit)
        except BodyTooLarge:
            self.refuse_unread_body(413, "request_too_large",
                                    f"Request exceeds the maximum allowed size of {limit} bytes.")
        except BadBody as exc:
            self.refuse_unread_body(400, "invalid_request_error", str(exc))
        return None

    def auth_problem(self) -> str | None:
        """Return why the call is refused with 401, or None. A key (`x-api-key` or a Bearer token) is always
        required; without --api-key any key is accepted, with it the key must match."""
        authorization = self.headers.get("Authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        given = [key for key in (self.headers.get("x-api-key"), bearer) if key]
        if not given:
            return "x-api-key header is required"
        expected = self.server.opts.api_key
        if expected is not None and expected not in given:
            return "invalid x-api-key"
        return None


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server holding the store, stats and fault plan the handlers share."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, opts: Options, store: BatchStore,
                 replays: tuple[ReplaySource, ...] = ()) -> None:
        self.opts = opts
        self.store = store
        self.replays = replays
        self.catalogue: Catalogue = load_catalogue(opts.models_file)
        self._today = date.fromisoformat(opts.today) if opts.today else None
        self.stats = Stats()
        self.faults = FaultPlan(opts)
        self.stopping = threading.Event()
        self.message_lock = threading.Lock()
        self.message_prefixes: set[str] = set()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def today(self) -> date:
        """The day model lifecycles are read at: --today, else the emulated clock's (UTC) date."""
        return self._today or day_of(self.store.clock.now())

    @property
    def host_port(self) -> str:
        host = self.server_name
        return f"[{host}]:{self.server_port}" if ":" in host else f"{host}:{self.server_port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host_port}"

    def handle_error(self, request, client_address) -> None:
        if self.opts.verbose:
            super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop serving; stalled handlers wake up and close their connections."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
