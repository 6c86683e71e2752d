"""Helpers of the golden-file tests: stub servers, and a mixed plan that exercises every kind of call a
recording keeps (HTTP, LLM, retries, a fallback) next to deterministic skills."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aos.services import golden
from aos.services.runs import submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import RecordedRequest, Reply, serve_http
from tests.support.llm_server import FakeLlmServer
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()
SECRET = "golden-test-secret"


class Flaky:
    """Answers 503 ``failures`` times, then 200 with a JSON body: a step that fails twice then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, req: RecordedRequest) -> Reply:
        with self._lock:
            self.calls += 1
            n = self.calls
        if n <= self.failures:
            return Reply(503, json={"error": "busy", "n": n})
        return Reply(200, json={"price": 42.5, "currency": "EUR", "n": n})


@contextmanager
def running_stubs() -> Iterator[dict[str, Any]]:
    """A running HTTP stub and LLM stub; the test stops them (``stop()``) before replaying."""
    llm = FakeLlmServer().start()
    flaky = Flaky(failures=2)
    routes = {
        "/weather": Reply(json={"current": {"temp_c": 21.5, "wind": "NE"}, "city": "Paris",
                                "note": "caf\u00e9 \u2615 \U0001F600", "big": 1e21, "small": 1.5e-7}),
        "/flaky": flaky,
        "/down": Reply(500, json={"error": "down"}),
    }
    ctx = serve_http(routes)
    http = ctx.__enter__()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            ctx.__exit__(None, None, None)
            llm.stop()

    try:
        yield {"http": http, "llm": llm, "flaky": flaky, "stop": stop}
    finally:
        stop()


def mixed_plan(http_url: str, llm_url: str) -> dict[str, Any]:
    """HTTP, a transform, a schema check, an LLM call, a calendar event, a step that fails twice then
    succeeds, a step that falls back, and the offline LLM provider."""
    return {
        "name": "golden-mixed",
        "inputs": {"city": "Paris"},
        "steps": [
            {"id": "fetch", "skill": "http.request",
             "args": {"method": "GET", "url": f"{http_url}/weather?city=${{inputs.city}}"}},
            {"id": "temp", "skill": "json.transform",
             "args": {"input": {"$ref": "steps.fetch.output.json"}, "expr": "current.temp_c"}},
            {"id": "check", "skill": "json.validate",
             "args": {"input": {"t": {"$ref": "steps.temp.output"}},
                      "schema": {"type": "object", "properties": {"t": {"type": "number"}}, "required": ["t"]}}},
            {"id": "say", "skill": "llm.complete",
             "args": {"provider": "openai_compatible", "base_url": llm_url, "model": "stub-model",
                      "prompt": "Write one line about ${steps.temp.output} degrees in ${inputs.city}."}},
            {"id": "meet", "skill": "calendar.create_event",
             "args": {"summary": "Weather review", "start": "2026-03-02T10:00:00", "duration_minutes": 30,
                      "timezone": "Europe/Paris"}},
            {"id": "price", "skill": "http.request",
             "args": {"method": "GET", "url": f"{http_url}/flaky"},
             "retry": {"max_attempts": 3, "backoff_s": 0.02, "backoff_max_s": 0.05}},
            {"id": "quote", "skill": "http.request",
             "args": {"method": "GET", "url": f"{http_url}/down"},
             "retry": {"max_attempts": 2, "backoff_s": 0.02, "backoff_max_s": 0.05},
             "on_error": {"mode": "FALLBACK",
                          "fallback": {"skill": "json.transform",
                                       "args": {"input": {"p": {"$ref": "steps.price.output.json.price"}},
                                                "expr": "p"}}}},
            {"id": "offline", "skill": "llm.complete",
             "args": {"provider": "offline", "prompt": "Summarise: ${steps.say.output.text}", "max_tokens": 64}},
        ],
    }


def short_plan(http_url: str, llm_url: str) -> dict[str, Any]:
    """The first four steps of the mixed plan: an HTTP call, a transform, a schema check, an LLM call."""
    plan = mixed_plan(http_url, llm_url)
    return {**plan, "name": "golden-short", "steps": plan["steps"][:4]}


def run_plan(ctx, plan: dict[str, Any], timeout: float = 60) -> str:
    run_id = submit_run(ctx, plan, PUB)
    run = wait_for_run(run_id, timeout=timeout)
    assert run.status == "succeeded", (run.status, run.error_code, run.error_message)
    return str(run_id)


def record(ctx, run_id: str) -> dict[str, Any]:
    return golden.record_run(ctx, run_id)
