"""The SDK's HTTP behaviour against local stub servers: retries honouring Retry-After, which failures are
retried for which methods, errors mapped from problem+json, and the event stream's parsing and resumption.

The live API cannot be told to answer 503 or drop a stream on cue; a stub server can (tests/support).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from aos.sdk import (
    AosApiError,
    ApiUnreachable,
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RetryPolicy,
    RunWaitTimeout,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from aos.sdk.retry import parse_retry_after
from aos.sdk.sse import SSEDecoder
from tests.support.http_server import RecordedRequest, Reply, serve_http

FAST = RetryPolicy(max_attempts=3, backoff_s=0.02, backoff_max_s=0.05)
ENTRY = {"code": "NOT_FOUND", "category": "request", "retryable": False, "recovery_mode": "ABORT", "http_status": 404,
         "description": "No such object.", "suggestion": "Check the id."}
RUN = {"id": "0b9f7c1e-58a8-4e8c-9a0e-4d1a8f7c2b10", "status": "queued", "steps_total": 1, "next_step": 0,
       "budget": {"spent_cost_usd": 0.0, "spent_tokens": 0, "steps_started": 0}, "inputs": {}, "steps": []}


def problem(status: int, code: str, detail: str = "no", **extra) -> Reply:
    return Reply(status, json={"type": f"/api/v1/errors/{code}", "title": "t", "status": status, "detail": detail,
                               "code": code, **extra},
                 headers={"Content-Type": "application/problem+json", **extra.pop("headers", {})})


class Script:
    """Answers requests in order from a list of replies (the last one repeats); records when each came."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.times: list[float] = []

    def __call__(self, req: RecordedRequest) -> Reply:
        self.times.append(time.monotonic())
        return self.replies[min(len(self.times), len(self.replies)) - 1]


# --- retries ---------------------------------------------------------------------------------------------------


def test_a_503_with_retry_after_is_waited_for_then_retried():
    script = Script(problem(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": "1"}), Reply(json=ENTRY))
    with serve_http({"GET /api/v1/errors/NOT_FOUND": script}) as srv, Client(srv.base_url, "k") as client:
        entry = client.errors.get("NOT_FOUND")
    assert entry.code == "NOT_FOUND" and entry.recovery_mode == "ABORT" and entry.suggestion == "Check the id."
    assert len(srv.requests) == 2
    assert script.times[1] - script.times[0] >= 1.0  # the hint was honoured, not just any backoff


def test_a_429_on_submit_is_retried_with_the_same_body_after_retry_after():
    script = Script(problem(429, "RATE_LIMITED", headers={"Retry-After": "1"}), Reply(201, json=RUN))
    plan = {"name": "p", "steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
    with serve_http({"POST /api/v1/runs": script}) as srv, Client(srv.base_url, "secret-key") as client:
        run = client.runs.create(plan, inputs={"x": 1})
    assert run.id == RUN["id"] and run.status == "queued"
    assert [r.json() for r in srv.requests] == [{"plan": plan, "inputs": {"x": 1}}] * 2
    assert all(r.headers["authorization"] == "Bearer secret-key" for r in srv.requests)
    assert script.times[1] - script.times[0] >= 1.0


def test_retry_after_as_an_http_date_is_honoured():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    script = Script(problem(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": when}), Reply(json=ENTRY))
    with serve_http({"/api/v1/errors/NOT_FOUND": script}) as srv, Client(srv.base_url, "k") as client:
        client.errors.get("NOT_FOUND")
    # an HTTP date has one-second resolution: at least one second must have been waited
    assert len(srv.requests) == 2 and script.times[1] - script.times[0] >= 0.9


def test_retries_stop_after_max_attempts_with_the_last_error():
    with serve_http({"/api/v1/errors/NOT_FOUND": problem(503, "DB_UNAVAILABLE", "database down")}) as srv, \
            Client(srv.base_url, "k", retry=FAST) as client:
        with pytest.raises(ServiceUnavailable) as exc:
            client.errors.get("NOT_FOUND")
    assert len(srv.requests) == 3
    assert exc.value.code == "DB_UNAVAILABLE" and exc.value.status == 503 and exc.value.detail == "database down"


def test_a_retry_after_longer_than_the_cap_is_raised_at_once_with_the_hint():
    with serve_http({"/api/v1/runs": problem(429, "RATE_LIMITED", headers={"Retry-After": "120"})}) as srv, \
            Client(srv.base_url, "k") as client:
        with pytest.raises(RateLimited) as exc:
            client.runs.page()
    assert len(srv.requests) == 1
    assert exc.value.retry_after == 120 and exc.value.code == "RATE_LIMITED"


def test_other_error_statuses_are_not_retried():
    with serve_http({"/api/v1/errors/X": problem(500, "INTERNAL_ERROR")}) as srv, \
            Client(srv.base_url, "k", retry=FAST) as client:
        with pytest.raises(ServerError):
            client.errors.get("X")
    assert len(srv.requests) == 1


def test_a_read_timeout_is_retried_for_get_but_never_for_post():
    slow = Reply(json=ENTRY, delay_s=2)
    with serve_http({"/api/v1/errors/NOT_FOUND": slow, "POST /api/v1/runs": slow}) as srv, \
            Client(srv.base_url, "k", retry=FAST, timeout=0.3) as client:
        with pytest.raises(ApiUnreachable) as get_exc:
            client.errors.get("NOT_FOUND")
        gets = len(srv.requests)
        with pytest.raises(ApiUnreachable) as post_exc:
            client.runs.create({"steps": []})
        posts = len(srv.requests) - gets
    assert gets == 3 and posts == 1  # the POST may have been processed: sending it again could run the plan twice
    assert get_exc.value.code == post_exc.value.code == "SERVICE_UNAVAILABLE"
    assert "no complete answer from the API" in post_exc.value.detail


def test_a_refused_connection_says_how_to_start_the_api():
    with Client("http://127.0.0.1:1", "k", retry=FAST) as client:
        with pytest.raises(ApiUnreachable) as exc:
            client.runs.create({"steps": []})
    assert exc.value.code == "SERVICE_UNAVAILABLE" and exc.value.status is None
    assert exc.value.detail.startswith("cannot reach the API at http://127.0.0.1:1: start it with `aos dev` or "
                                       "`aos api`")


def test_which_transport_errors_are_retried_for_which_methods():
    policy = RetryPolicy(max_attempts=2)
    refused, dropped = httpx.ConnectError("refused"), httpx.RemoteProtocolError("dropped")
    assert policy.delay_after_error(1, "POST", refused) is not None    # nothing was sent
    assert policy.delay_after_error(1, "POST", dropped) is None        # it may have been processed
    assert policy.delay_after_error(1, "GET", dropped) is not None
    assert policy.delay_after_error(1, "PUT", dropped) is not None     # PUT replaces: idempotent
    assert policy.delay_after_error(2, "GET", refused) is None         # attempts used up


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(backoff_s=0.5, backoff_max_s=2.0)
    delays = [policy.backoff(5) for _ in range(200)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # full jitter: not one fixed schedule


def test_parse_retry_after():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_the_async_client_retries_a_503_after_retry_after():
    script = Script(problem(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": "1"}), Reply(json=ENTRY))

    async def main(url: str):
        async with AsyncClient(url, "k") as client:
            return await client.errors.get("NOT_FOUND")

    with serve_http({"/api/v1/errors/NOT_FOUND": script}) as srv:
        entry = asyncio.run(main(srv.base_url))
    assert entry.code == "NOT_FOUND" and len(srv.requests) == 2
    assert script.times[1] - script.times[0] >= 1.0


def test_the_async_client_retries_a_429_and_gives_up_after_max_attempts():
    async def main(url: str):
        async with AsyncClient(url, "k", retry=FAST) as client:
            return await client.runs.create({"steps": []})

    with serve_http({"/api/v1/runs": problem(429, "RATE_LIMITED", headers={"Retry-After": "0"})}) as srv:
        with pytest.raises(RateLimited) as exc:
            asyncio.run(main(srv.base_url))
    assert len(srv.requests) == 3 and exc.value.retry_after == 0


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "CURSOR_INVALID", ValidationFailed), (401, "AUTH_INVALID", Unauthorized), (403, "FORBIDDEN_SCOPE", Forbidden),
    (404, "RUN_NOT_FOUND", NotFound), (409, "CONFLICT", Conflict), (413, "REQUEST_TOO_LARGE", ValidationFailed),
    (422, "PLAN_INVALID", ValidationFailed), (500, "INTERNAL_ERROR", ServerError),
])
def test_problem_json_becomes_the_exception_of_its_status_with_its_code(status, code, cls):
    problems = [{"path": "$.steps[0].skill", "code": "SKILL_NOT_FOUND", "message": "no skill nope"}]
    with serve_http({"/api/v1/runs/r1": problem(status, code, "what happened", problems=problems)}) as srv, \
            Client(srv.base_url, "k", retry=FAST) as client:
        with pytest.raises(cls) as exc:
            client.runs.get("r1")
    err = exc.value
    assert isinstance(err, AosApiError)
    assert (err.code, err.status, err.detail) == (code, status, "what happened")
    assert err.problems == problems
    assert str(err) == f"{code}: what happened"


def test_an_error_body_that_is_not_problem_json_still_gets_a_catalog_code():
    with serve_http({"/api/v1/runs/r1": Reply(502, body="<html>Bad gateway</html>",
                                              headers={"Content-Type": "text/html"})}) as srv, \
            Client(srv.base_url, "k", retry=FAST) as client:
        with pytest.raises(ServerError) as exc:
            client.runs.get("r1")
    assert exc.value.code == "SERVICE_UNAVAILABLE" and exc.value.status == 502
    assert "Bad gateway" in exc.value.detail


def test_path_segments_are_quoted():
    with serve_http({}) as srv, Client(srv.base_url + "/api/v1/", "k", retry=FAST) as client:
        with pytest.raises(NotFound):
            client.workflows.get("a b/c", version=2)
    assert srv.requests[0].target == "/api/v1/workflows/a%20b%2Fc/versions/2"


def test_a_base_url_without_a_scheme_is_refused():
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("localhost:8000", "k")


# --- event stream ----------------------------------------------------------------------------------------------


def sse(*events: tuple[str | None, str, dict], retry_ms: int | None = 10) -> str:
    out = f"retry: {retry_ms}\n\n" if retry_ms is not None else ""
    for ev_id, name, data in events:
        out += (f"id: {ev_id}\n" if ev_id is not None else "") + f"event: {name}\ndata: {json.dumps(data)}\n\n"
        out += ": keepalive\n\n"
    return out


def event(i: int, type_: str, step_id: str | None = "a", **data) -> tuple[str, str, dict]:
    return str(i), type_, {"id": i, "type": type_, "step_id": step_id, "data": data, "at": f"2026-01-01T00:00:0{i}Z"}


END = (None, "end", {**{k: v for k, v in RUN.items() if k not in ("inputs", "steps")}, "status": "succeeded"})


class StreamScript:
    """First connection: events 1-2 then the server closes; second: must resume after 2, gets 3 and end."""

    def __init__(self) -> None:
        self.last_event_ids: list[str | None] = []

    def __call__(self, req: RecordedRequest) -> Reply:
        self.last_event_ids.append(req.headers.get("last-event-id"))
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if len(self.last_event_ids) == 1:
            body = sse(event(1, "run.started", None), event(2, "step.started", attempt=1))
        else:
            body = sse(event(3, "step.succeeded", duration_ms=1.5, cost_usd=0.0), END)
        return Reply(200, body=body.encode(), headers=headers, chunked=True, chunk_size=7)


def test_events_resume_after_a_dropped_stream_with_last_event_id_and_end_with_the_run():
    script = StreamScript()
    with serve_http({"/api/v1/runs/r1/events": script}) as srv, Client(srv.base_url, "k") as client:
        events = list(client.runs.events("r1"))
    assert script.last_event_ids == [None, "2"]
    assert [(e.id, e.type) for e in events] == [(1, "run.started"), (2, "step.started"), (3, "step.succeeded"),
                                                (None, "end")]
    assert events[2].data == {"duration_ms": 1.5, "cost_usd": 0.0} and events[2].at.year == 2026
    assert events[-1].run.status == "succeeded" and events[-1].run.id == RUN["id"]
    assert srv.requests[0].headers["accept"] == "text/event-stream"


def test_events_can_start_after_a_given_id():
    script = StreamScript()
    script.last_event_ids.append("(pretend a first connection happened)")
    with serve_http({"/api/v1/runs/r1/events": script}) as srv, Client(srv.base_url, "k") as client:
        events = list(client.runs.events("r1", after_id=2))
    assert script.last_event_ids[1] == "2"
    assert [e.type for e in events] == ["step.succeeded", "end"]


def test_async_events_resume_after_a_dropped_stream():
    script = StreamScript()

    async def main(url: str):
        async with AsyncClient(url, "k") as client:
            return [e async for e in client.runs.events("r1")]

    with serve_http({"/api/v1/runs/r1/events": script}) as srv:
        events = asyncio.run(main(srv.base_url))
    assert script.last_event_ids == [None, "2"]
    assert [e.type for e in events] == ["run.started", "step.started", "step.succeeded", "end"]


def test_an_event_stream_of_a_missing_run_raises_not_found():
    with serve_http({"/api/v1/runs/r1/events": problem(404, "NOT_FOUND")}) as srv, \
            Client(srv.base_url, "k") as client:
        with pytest.raises(NotFound):
            list(client.runs.events("r1"))
    assert len(srv.requests) == 1


def test_an_event_stream_gives_up_at_its_timeout():
    silent = Reply(200, body=sse(event(1, "run.started", None)), headers={"Content-Type": "text/event-stream"},
                   delay_s=5)
    with serve_http({"/api/v1/runs/r1/events": silent}) as srv, Client(srv.base_url, "k") as client:
        started = time.monotonic()
        with pytest.raises(RunWaitTimeout):
            list(client.runs.events("r1", timeout=0.5))
        assert time.monotonic() - started < 3


def test_a_stream_that_keeps_failing_ends_with_api_unreachable():
    cut = Reply(200, body="retry: 1\n\n", headers={"Content-Type": "text/event-stream"})  # closes, no events
    with serve_http({"/api/v1/runs/r1/events": cut}) as srv, Client(srv.base_url, "k", retry=FAST) as client:
        with pytest.raises(ApiUnreachable):
            list(client.runs.events("r1", max_reconnects=2))
    # a `retry:` line is not progress: the first connection and two reconnections, then it gives up
    assert len(srv.requests) == 3


def test_the_sse_decoder_follows_the_event_stream_format():
    d = SSEDecoder()
    lines = [": comment", "retry: 250", "id: 7", "event: step.started", "data: {\"a\":", "data:1}", "",
             "data: plain", "", "id: 8", "", "event: ignored", ""]
    out = [e for e in (d.feed(line) for line in lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in out] == [("step.started", "{\"a\":\n1}", "7"), ("message", "plain", "7")]
    assert d.retry_ms == 250 and d.last_event_id == "8"


def test_the_sdk_imports_nothing_of_the_server():
    import subprocess
    import sys

    code = "import aos.sdk, sys, json; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    ours = [m for m in loaded if m == "aos" or m.startswith("aos.")]
    assert [m for m in ours if m != "aos" and not m.startswith("aos.sdk")] == []
    assert not [m for m in loaded if m.split(".")[0] in ("flask", "sqlalchemy", "celery", "kombu", "psycopg")]
