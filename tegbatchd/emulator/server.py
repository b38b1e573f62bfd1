"""The HTTP server: routing, authentication and call-level faults in front of the endpoints."""

from __future__ import annotations

import socket
import socketserver
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tegbatchd.emulator import admin, api
from tegbatchd.emulator.faults import FaultPlan
from tegbatchd.emulator.options import Options
from tegbatchd.emulator.replay import ReplaySource
from tegbatchd.emulator.state import BatchStore
from tegbatchd.emulator.stats import Stats
from tegbatchd.emulator.transport import BadBody, BodyTooLarge, TransportHandler

API_ROOT = "/v1/messages"
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
        body = self.body_or_refuse(server.opts.max_body_bytes)
        if body is None:
            return
        fault = server.faults.fault_for_call()
        if fault is not None:
            server.stats.fault_injected()
            self.send_error_json(fault.status, fault.error_type, fault.message,
                                 headers={"retry-after": server.opts.fault_retry_after})
            return
        if not self.authorized():
            self.send_error_json(401, "authentication_error", "invalid x-api-key")
            return
        try:
            if endpoint in ("create", "messages"):
                getattr(api, endpoint)(self, body)
            elif endpoint == "list":
                api.list_batches(self, query)
            else:
                getattr(api, endpoint)(self, batch_id)
        except api.ApiError as exc:
            self.send_error_json(exc.status, exc.error_type, exc.message)

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

    def authorized(self) -> bool:
        """Without --api-key every key is accepted; with it, `x-api-key` or a Bearer token must match."""
        expected = self.server.opts.api_key
        if expected is None:
            return True
        authorization = self.headers.get("Authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        return expected in (self.headers.get("x-api-key"), bearer)


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server holding the store, stats and fault plan the handlers share."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, opts: Options, store: BatchStore,
                 replays: tuple[ReplaySource, ...] = ()) -> None:
        self.opts = opts
        self.store = store
        self.replays = replays
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
