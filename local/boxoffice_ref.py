"""A reference box-office control server: what the forwarder talks to in the demo and the tests.

It implements the box-office protocol documented in docs/ingest.md: ``POST /entries`` with a JSON
read, ``Authorization: Bearer <token>`` and ``Idempotency-Key: <read_id>``, answering

* 200 ``accepted``        -- a sold ticket entering for the first time;
* 409 ``already_used``    -- a sold ticket that already entered (a re-used ticket);
* 404 ``unknown_ticket``  -- a ticket this box office never sold;
* 401                     -- a missing or wrong token.

A retried request (same ``Idempotency-Key``) gets the answer the first one got, so a forwarder
retry never turns "accepted" into "already used".  Optional fault injection (``fail_every``,
``delay_s``) lets tests play a slow or flapping box office.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: BoxOfficeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        srv = self.server
        if srv.token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {srv.token}"):
            self._reply(401, {"result": "unauthorized", "message": "missing or wrong bearer token"})
            return
        if self.path != "/entries":
            self._reply(404, {"result": "not_found", "message": f"no route {self.path}"})
            return
        try:
            entry = json.loads(raw)
            ticket = str(entry["ticket_id"])
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"result": "bad_request", "message": "expected a JSON object with ticket_id"})
            return
        status, obj = srv.decide(ticket, self.headers.get("Idempotency-Key") or entry.get("read_id"))
        if srv.delay_s:
            time.sleep(srv.delay_s)
        self._reply(status, obj)


class BoxOfficeServer(ThreadingHTTPServer):
    """Thread-safe reference box office.  ``answers`` counts what it answered, by result."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        sold: Iterable[str] = (),
        token: str = "",
        fail_every: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(address, _Handler)
        self.sold = set(sold)
        self.token = token
        self.fail_every = fail_every
        self.delay_s = delay_s
        self.used: dict[str, str] = {}  # ticket -> idempotency key of its accepted entry
        self.replies: dict[str, tuple[int, dict]] = {}
        self.answers: Counter[str] = Counter()
        self._calls = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/entries"

    def decide(self, ticket: str, key: str | None) -> tuple[int, dict]:
        with self._lock:
            self._calls += 1
            if self.fail_every and self._calls % self.fail_every == 0:
                return 503, {"result": "unavailable", "message": "injected fault"}
            if key and key in self.replies:
                return self.replies[key]
            if ticket not in self.sold:
                reply = (404, {"result": "unknown_ticket", "message": f"ticket {ticket} was not sold here"})
            elif ticket in self.used:
                reply = (409, {"result": "already_used", "message": f"ticket {ticket} already entered"})
            else:
                self.used[ticket] = key or ""
                reply = (200, {"result": "accepted", "message": "welcome"})
            if key:
                self.replies[key] = reply
            self.answers[reply[1]["result"]] += 1
            return reply

    def start(self) -> BoxOfficeServer:
        self._thread = threading.Thread(target=self.serve_forever, name="box-office", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
