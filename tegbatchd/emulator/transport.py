"""HTTP/1.1 plumbing shared by every endpoint: bodies in, JSON and chunked JSONL out, cut connections."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import quote

from tegbatchd.emulator.ids import random_id
from tegbatchd.emulator.wire import error_envelope

ORGANIZATION_ID = "00000000-0000-4000-8000-00000000e4a1"  # the emulated organization (anthropic-organization-id)
CHUNK_BYTES = 64 * 1024
DRAIN_BYTES = 16 * 1024 * 1024
STATUS_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                      404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                      500: "api_error", 529: "overloaded_error"}


class BodyTooLarge(Exception):
    """The request body is over the limit (answered 413 without reading it)."""


class BadBody(Exception):
    """The request body cannot be read (bad Content-Length or chunk framing)."""


class TransportHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 300  # seconds an idle keep-alive connection (or a stuck read/write) may hold its thread
    server_version = "tegbatchd-emulator"
    sys_version = ""
    request_id = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.opts.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, on the emulated clock (a server whose clock is off says so here too)."""
        return super().date_time_string(self.server.store.clock.now() if timestamp is None  # type: ignore[attr-defined]
                                        else timestamp)

    def new_request_id(self) -> str:
        self.request_id = random_id("req_")
        return self.request_id

    # -- input ------------------------------------------------------------------------------

    def declared_length(self) -> int:
        """Return the Content-Length (0 when absent). Raise BadBody if it is not a number."""
        value = self.headers.get("Content-Length")
        if value is None:
            return 0
        try:
            length = int(value)
        except ValueError as exc:
            raise BadBody(f"invalid Content-Length {value!r}") from exc
        if length < 0:
            raise BadBody(f"invalid Content-Length {value!r}")
        return length

    def read_body(self, limit: int) -> bytes:
        """Return the request body. Raise BodyTooLarge (checked before reading) or BadBody."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.declared_length()
        if length > limit:
            raise BodyTooLarge()
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise BadBody("request body shorter than its Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise BadBody("bad chunk size line") from exc
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise BodyTooLarge()
            parts.append(self.rfile.read(size))
            self.rfile.readline(3)

    # -- output -----------------------------------------------------------------------------

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                  close: bool = False) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_ids()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_ids(self) -> None:
        """The headers every answer carries: request-id and anthropic-organization-id."""
        self.send_header("request-id", self.request_id or self.new_request_id())
        self.send_header("anthropic-organization-id", ORGANIZATION_ID)

    def send_error_json(self, status: int, error_type: str, message: str,
                        headers: dict[str, str] | None = None, close: bool = False,
                        error_code: str | None = None) -> None:
        """Answer with Anthropic's error envelope (its request_id matches the `request-id` header)."""
        request_id = self.request_id or self.new_request_id()
        self.send_json(status, error_envelope(error_type, message, request_id, error_code), headers, close)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by the stdlib parser (bad request line, unknown method) as JSON too."""
        self.new_request_id()
        self.send_error_json(code, STATUS_ERROR_TYPES.get(code, "invalid_request_error"),
                             message or self.responses.get(code, ("error",))[0], close=True)

    def refuse_unread_body(self, status: int, error_type: str, message: str) -> None:
        """Answer, then close politely: stop writing and discard what the client still sends."""
        self.send_error_json(status, error_type, message, close=True)
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(2.0)
            drained = 0
            while drained < DRAIN_BYTES:
                data = self.connection.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def stream_lines(self, lines: Iterable[bytes], cut_after: int | None,
                     content_type: str = "application/x-jsonl", filename: str | None = None) -> int:
        """Send `lines` as a chunked body in ~64 KB chunks; cut the connection after `cut_after` lines.

        Return the number of lines sent. A client that goes away mid-stream simply ends the stream.
        """
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        if filename:
            self.send_header("Content-Disposition", f"attachment; filename*=utf-8''{quote(filename)}")
        self.send_ids()
        self.end_headers()
        buffer: list[bytes] = []
        size = sent = 0
        try:
            if cut_after == 0:
                self.abort()
                return 0
            for line in lines:
                buffer.append(line)
                size += len(line)
                sent += 1
                if cut_after is not None and sent >= cut_after:
                    self._write_chunk(b"".join(buffer))
                    self.abort()
                    return sent
                if size >= CHUNK_BYTES:
                    self._write_chunk(b"".join(buffer))
                    buffer, size = [], 0
            if buffer:
                self._write_chunk(b"".join(buffer))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        return sent

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def abort(self) -> None:
        """Close the connection at once: no response, or no end to the one under way."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
