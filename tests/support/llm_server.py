"""A fake LLM provider on 127.0.0.1: the Anthropic Messages API and the OpenAI Chat Completions API.

Tests point the real SDK clients at it (``AOS_ANTHROPIC_BASE_URL=server.url``,
``AOS_OPENAI_BASE_URL=server.openai_url``), queue the answers they want, and
read back every request the server received (path, headers, JSON body).
With an empty queue the server answers a plain success in the protocol of the
path it was called on.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"
OPENAI_EMBEDDINGS_PATH = "/v1/embeddings"


@dataclass(frozen=True)
class ScriptedResponse:
    status: int
    body: Any                     # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0          # sleep before answering (timeouts)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]       # lower-cased names
    body: Any


def anthropic_message(text: str = "Hello from the fake Anthropic.", *, model: str = "claude-sonnet-4-5-20250929",
                      stop_reason: str = "end_turn", input_tokens: int = 12,
                      output_tokens: int = 7) -> ScriptedResponse:
    return ScriptedResponse(200, {
        "id": "msg_01FakeServer", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": text}], "model": model,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }, {"request-id": "req_fake_anthropic"})


def anthropic_error(status: int, error_type: str, message: str,
                    headers: dict[str, str] | None = None) -> ScriptedResponse:
    return ScriptedResponse(status, {"type": "error", "error": {"type": error_type, "message": message}},
                            dict(headers or {}, **{"request-id": "req_fake_error"}))


def openai_completion(text: str | None = "Hello from the fake OpenAI.", *, model: str = "gpt-4o-mini-2024-07-18",
                      finish_reason: str = "stop", prompt_tokens: int = 20, completion_tokens: int = 9,
                      refusal: str | None = None) -> ScriptedResponse:
    return ScriptedResponse(200, {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": text, "refusal": refusal}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }, {"x-request-id": "req_fake_openai"})


def openai_embedding(body: Any) -> ScriptedResponse:
    """An embeddings answer for the request ``body``: a deterministic vector of the asked dimensions."""
    dims = int((body or {}).get("dimensions") or 1536)
    text = str((body or {}).get("input"))
    seed = sum(text.encode()) or 1
    vector = [((seed * (i + 1)) % 97 - 48) / 48 for i in range(dims)]
    return ScriptedResponse(200, {"object": "list", "model": (body or {}).get("model", "text-embedding-3-small"),
                                  "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                                  "usage": {"prompt_tokens": len(text) // 4 + 1, "total_tokens": len(text) // 4 + 1}})


def openai_error(status: int, message: str, error_type: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> ScriptedResponse:
    return ScriptedResponse(status, {"error": {"message": message, "type": error_type, "param": None,
                                               "code": code}}, dict(headers or {}))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        owner = self.server.owner
        owner._record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        scripted = owner._next(self.path, body)
        if scripted.delay_s:
            time.sleep(scripted.delay_s)
        payload = scripted.body if isinstance(scripted.body, bytes) else json.dumps(scripted.body).encode()
        try:
            self.send_response(scripted.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in scripted.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeLlmServer


class FakeLlmServer:
    """Start with ``with FakeLlmServer() as srv:``; queue answers with ``srv.push(...)``."""

    def __init__(self) -> None:
        self._queue: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-llm", daemon=True)

    @property
    def url(self) -> str:
        """Base URL for the Anthropic SDK (it appends /v1/messages)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI SDK (it appends /chat/completions)."""
        return f"{self.url}/v1"

    def push(self, *responses: ScriptedResponse) -> None:
        with self._lock:
            self._queue.extend(responses)

    def _next(self, path: str, body: Any = None) -> ScriptedResponse:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if path == ANTHROPIC_PATH:
            return anthropic_message()
        if path == OPENAI_PATH:
            return openai_completion()
        if path == OPENAI_EMBEDDINGS_PATH:
            return openai_embedding(body)
        return ScriptedResponse(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> FakeLlmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
