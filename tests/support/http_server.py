"""A real HTTP server in a thread, for tests of clients that speak HTTP.

    with serve_http({"GET /items": Reply(json={"n": 1})}) as srv:
        client_under_test(srv.url("/items"))
        assert srv.requests[0].headers["accept"] == "application/json"

Routes map ``"METHOD /path"`` or ``"/path"`` (any method) to a ``Reply`` or to a
function ``(RecordedRequest) -> Reply`` for answers that depend on the request.
Every request received is recorded (method, path, query, headers, body), also
the ones no route answers (those get a 404). The server binds
``127.0.0.1:0`` (or the ``host`` and ``port`` given) so tests never collide on a port.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    target: str                      # the request target as sent: path and query
    headers: dict[str, str]          # lower-cased names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0             # wait before answering (ends early when the server stops)
    chunked: bool = False            # send the body with Transfer-Encoding: chunked, no Content-Length
    chunk_size: int = 1024

    def payload(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.json is not None:
            headers.setdefault("Content-Type", "application/json")
            return jsonlib.dumps(self.json).encode(), headers
        body = self.body.encode() if isinstance(self.body, str) else self.body
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body, headers


Handler = Reply | Callable[[RecordedRequest], Reply]


class HttpTestServer:
    """A running server: its base URL, its routes and what it has received."""

    __test__ = False

    def __init__(self, routes: Mapping[str, Handler] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self._httpd.daemon_threads = True
        # a short poll interval: shutdown() waits up to one interval, once per test
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="http-test-server", daemon=True)

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def route(self, key: str, handler: Handler) -> None:
        self.routes[key] = handler

    def start(self) -> HttpTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _find(self, req: RecordedRequest) -> Handler | None:
        return self.routes.get(f"{req.method} {req.path}") or self.routes.get(req.path)


@contextmanager
def serve_http(routes: Mapping[str, Handler] | None = None, host: str = "127.0.0.1",
               port: int = 0) -> Iterator[HttpTestServer]:
    """Run an HttpTestServer for the duration of a ``with`` block (``port`` 0: a free one)."""
    server = HttpTestServer(routes, host, port).start()
    try:
        yield server
    finally:
        server.stop()


def _handler_class(server: HttpTestServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked replies need it

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            server._record(req)
            handler = server._find(req)
            if handler is None:
                reply = Reply(status=404, json={"error": "no route", "path": req.path})
            else:
                reply = handler(req) if callable(handler) else handler
            if reply.delay_s and server._stopping.wait(reply.delay_s):
                return
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            body, headers = reply.payload()
            self.send_response(reply.status)
            names = {k.lower() for k in headers}
            for k, v in headers.items():
                self.send_header(k, v)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif "content-length" not in names:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                if reply.chunked:
                    for i in range(0, len(body), reply.chunk_size):
                        part = body[i:i + reply.chunk_size]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (a size cap or timeout): that is what some tests check
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the stdlib's name
            pass  # keep test output quiet

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return _Handler
