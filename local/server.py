"""The local camera API: an HTTP server with API Gateway's contract in front of ``ingest.handler``.

It does what API Gateway does for the cloud -- checks the ``x-api-key`` (constant-time, against the
camera registry), enforces the payload limit, builds the REST proxy event (``local.events``) -- and
hands the event to ``invoke`` (the same Lambda handler).  In ``monuv-qr serve`` every worker process
runs one of these servers on the shared listening socket and invokes the handler in-process
(``local.worker``).  ``GET /health`` reports each part of the local pipeline; ``GET /openapi.yaml``
serves the API description.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ingest.cameras import Camera
from local.events import decode_body, proxy_event

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""API Gateway REST payload limit (10 MB); the handler applies the tighter per-image limit."""

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi" / "camera-api.yaml"

Invoke = Callable[[dict], Mapping[str, Any]]
Authenticate = Callable[[str | None], Camera | None]


ROUTES: dict[str, tuple[str, ...]] = {
    "/upload": ("POST",),
    "/health": ("GET", "HEAD"),
    "/openapi.yaml": ("GET", "HEAD"),
}
"""The methods each route answers; any other method gets 405 with an ``Allow`` header."""


MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
"""Header limits, as ``http.client`` enforces them (a longer line or more headers is a 431)."""


def error_body(code: str, reason: str) -> bytes:
    return json.dumps({"error": {"code": code, "reason": reason}}).encode("utf-8")


def read_headers(rfile: Any) -> http.client.HTTPMessage:
    """Read a request's header block into the ``HTTPMessage`` that ``http.server`` would build.

    Same limits and the same message type as ``http.client.parse_headers``, without its detour
    through the e-mail parser (a tenth of a millisecond per request).  A line folded onto the
    previous header (obsolete line folding) is joined to it with a space.

    Raises:
        http.client.LineTooLong: a line over ``MAX_HEADER_LINE`` bytes.
        http.client.HTTPException: more than ``MAX_HEADERS`` headers.
        ValueError: a line that is not ``name: value``.
    """
    msg = http.client.HTTPMessage()
    pairs: list[list[str]] = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            if not pairs:
                raise ValueError("the first header line is a continuation line")
            pairs[-1][1] += " " + text.lstrip(" \t")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"not a 'name: value' header line: {text[:60]!r}")
        pairs.append([name, value.lstrip(" \t")])  # trailing blanks stay, as with http.client
        if len(pairs) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
    for name, value in pairs:
        msg.set_raw(name, value)
    return msg


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value for now (formatted once per second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Handler(BaseHTTPRequestHandler):
    server: CameraApiServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may take to send its request
    # TCP_NODELAY: with Nagle's algorithm a keep-alive client's next request could wait for a delayed
    # ACK (40 ms on Linux) of this answer; _send also writes status, headers and body in one send
    disable_nagle_algorithm = True

    # -- plumbing ------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, busy=False)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle(self) -> None:
        """Serve keep-alive requests until the client closes, or the server drains (see ``stop``)."""
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not self.server.draining:
            self.server.track(self.connection, busy=False)
            if self.server.draining:  # stop() may have run between the check and marking idle
                break
            self.handle_one_request()

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with :func:`read_headers` for the header block.

        The request line gets the standard library's checks and answers (bad or 2.0+ version,
        HTTP/0.9 lines); the headers its limits (431) plus a 400 for a malformed line.
        """
        self.server.track(self.connection, busy=True)  # a request line arrived: stop() lets it finish
        if not self._parse_request_line():
            return False
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        except ValueError as err:
            self.send_error(HTTPStatus.BAD_REQUEST, str(err))
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _parse_request_line(self) -> bool:
        """The request-line half of the standard library's ``parse_request`` (same checks, same answers)."""
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        self.requestline = requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = version[5:].split(".") if version.startswith("HTTP/") else []
            if len(number) != 2 or not all(n.isascii() and n.isdigit() and len(n) <= 10 for n in number):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            major_minor = int(number[0]), int(number[1])
            if major_minor >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
                return False
            self.close_connection = major_minor < (1, 1)
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, "/" + path.lstrip("/") if path.startswith("//") else path
        return True

    def log_message(self, format: str, *args: Any) -> None:  # route access logs to logging
        if log.isEnabledFor(logging.DEBUG):  # (formatting every access line costs ~30 us per request)
            log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        """Status line, headers and body in one write (see ``disable_nagle_algorithm``)."""
        self.log_request(status)
        if self.server.draining:  # shutting down: this is the connection's last answer
            self.close_connection = True
            headers = {**(headers or {}), "Connection": "close"}
        reason = self.responses[status][0] if status in self.responses else ""
        head = (
            f"{self.protocol_version} {status} {reason}\r\nServer: {self.version_string()}\r\n"
            f"Date: {http_date()}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        )
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
            if k.lower() == "connection" and v.lower() == "close":
                self.close_connection = True
        data = (head + "\r\n").encode("latin-1", "strict")
        self.wfile.write(data if self.command == "HEAD" else data + body)

    def _error(self, status: int, code: str, reason: str, close: bool = False, headers=None) -> None:
        if close:
            self.close_connection = True
            headers = {**(headers or {}), "Connection": "close"}
        self._send(status, error_body(code, reason), headers=headers)

    def _not_allowed(self) -> None:
        path = urlsplit(self.path or "/").path
        allowed = ROUTES.get(path)
        if allowed is None:
            self._error(404, "not_found", f"no route {path[:100]}; the camera API is POST /upload", close=True)
            return
        self._error(
            405,
            "method_not_allowed",
            f"{self.command} is not allowed on {path}; use {' or '.join(allowed)}",
            close=True,
            headers={"Allow": ", ".join(allowed)},
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the HTTP layer itself (bad request line, URI or headers too long, unknown method)
        get the API's JSON error document and a 4xx: a malformed request is the client's fault."""
        if code == 501:  # no do_<METHOD>: an unknown or unsupported method
            self._not_allowed()
            return
        status = code if 400 <= code < 500 else 400
        self.request_version = self.protocol_version  # an unparsed request would get a bare HTTP/0.9 body
        if not getattr(self, "command", None):
            self.command = "GET"  # _send needs it; the request line was unreadable
        self._error(status, "bad_request", f"malformed HTTP request: {message or 'unreadable'}", close=True)

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            health = self.server.health()
            self._send(200 if health.get("status") == "ok" else 503, json.dumps(health, default=str).encode())
        elif path == "/openapi.yaml":
            if OPENAPI_PATH.exists():
                self._send(200, OPENAPI_PATH.read_bytes(), "application/yaml")
            else:
                self._error(404, "not_found", "the OpenAPI description is in the source tree: openapi/camera-api.yaml")
        elif path in ROUTES:
            self._not_allowed()
        else:
            self._error(404, "not_found", f"no route {path}; the camera API is POST /upload")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/upload":
            self._not_allowed()
            return
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length_header is None:
            self._error(411, "length_required", "send a Content-Length header (chunked bodies are not accepted)", True)
            return
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(400, "bad_request", f"Content-Length {length_header[:20]!r} is not a byte count", True)
            return
        if length > MAX_REQUEST_BYTES:
            self._error(
                413,
                "payload_too_large",
                f"request body is {length:,} bytes; the limit is {MAX_REQUEST_BYTES:,}",
                close=True,
            )
            return
        camera = self.server.authenticate(self.headers.get("x-api-key"))
        if camera is None:
            self._error(
                403, "forbidden", "missing, unknown or revoked API key (send it in the x-api-key header)", close=True
            )
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._error(400, "bad_request", "the request body ended before Content-Length bytes", True)
            return
        headers = {k: v for k, v in self.headers.items()}
        event = proxy_event(
            "POST",
            url.path,
            headers,
            body,
            api_key_id=camera.key_id,
            source_ip=self.client_address[0],
            query=dict(parse_qsl(url.query)) or None,
        )
        try:
            response = self.server.invoke(event)
        except Exception:  # a dependency (worker pool, database) failed: retryable, as in the cloud
            log.exception("invoking the handler failed")
            self._error(503, "unavailable", "the pipeline could not accept the frame; retry later")
            return
        out_headers = dict(response.get("headers") or {})
        content_type = out_headers.pop("Content-Type", out_headers.pop("content-type", "application/json"))
        self._send(int(response.get("statusCode", 500)), decode_body(response), content_type, out_headers)

    def do_HEAD(self) -> None:
        self.do_GET()  # _send writes no body for HEAD

    def do_PUT(self) -> None:
        self._not_allowed()

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT


class CameraApiServer(ThreadingHTTPServer):
    """Threaded HTTP server; ``invoke`` runs the handler, ``authenticate`` maps an API key to a camera."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        invoke: Invoke,
        authenticate: Authenticate,
        health: Callable[[], dict] | None = None,
        listen_socket: socket.socket | None = None,
    ) -> None:
        """Bind ``address``, or accept on ``listen_socket`` (already listening, shared with other
        processes: ``local.worker``; ``address`` is then ignored)."""
        super().__init__(address, _Handler, bind_and_activate=listen_socket is None)
        if listen_socket is not None:
            self.socket.close()
            # non-blocking: several processes poll the same socket and only one wins each accept;
            # the others get EAGAIN (an OSError, ignored by socketserver) instead of blocking
            listen_socket.setblocking(False)
            self.socket = listen_socket
            self.server_address = listen_socket.getsockname()
        self.invoke = invoke
        self.authenticate = authenticate
        self.health = health or (lambda: {"status": "ok"})
        self._thread: threading.Thread | None = None
        self.draining = False
        self._connections: dict[socket.socket, bool] = {}  # open connection -> busy with a request
        self._conn_lock = threading.Lock()

    def track(self, conn: socket.socket, busy: bool) -> None:
        with self._conn_lock:
            self._connections[conn] = busy

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.pop(conn, None)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request is routine (debug log); anything else is logged with its trace."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="camera-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drain: stop accepting, close idle keep-alive connections, let requests in progress finish.

        A request whose line has arrived is answered (with ``Connection: close``); an idle keep-alive
        connection is closed at once (its client reconnects and is refused, or retries later).
        With ``block_on_close`` this returns when every request in progress has been answered.
        """
        self.draining = True
        self.shutdown()
        with self._conn_lock:
            idle = [c for c, busy in self._connections.items() if not busy]
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()
        if self._thread:
            self._thread.join(timeout=10)
