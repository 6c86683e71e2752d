"""The synchronous client of the AOS API.

    from aos.sdk import Client

    with Client("http://127.0.0.1:8000", api_key) as aos:
        run = aos.runs.create(plan).wait(timeout=60)
        for r in aos.runs.list(status="failed"):      # every page, fetched lazily
            print(r.id, r.error.code)
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import httpx

from aos.sdk import _calls as calls
from aos.sdk.errors import ApiUnreachable, RunWaitTimeout, error_from_response
from aos.sdk.models import (
    Agent,
    AgentState,
    CatalogEntry,
    Event,
    Inspection,
    Page,
    Provenance,
    RecoverySuggestion,
    Run,
    RunSummary,
    SignalRecord,
    SignalResult,
    Simulation,
    Skill,
    StepDetail,
    Workflow,
)
from aos.sdk.retry import RetryPolicy, parse_retry_after
from aos.sdk.sse import SSEDecoder

T = TypeVar("T")


class Paginator(Generic[T]):
    """Every item of a list across its pages, fetched one page at a time as you iterate."""

    def __init__(self, fetch: Callable[[str | None], Page[T]]) -> None:
        self._fetch = fetch

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def pages(self, cursor: str | None = None) -> Iterator[Page[T]]:
        while True:
            page = self._fetch(cursor)
            yield page
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def first_page(self, cursor: str | None = None) -> Page[T]:
        return self._fetch(cursor)


class Client:
    """A connection to one AOS API with one API key. ``base_url`` and ``api_key`` default to the
    ``AOS_URL`` and ``AOS_API_KEY`` environment variables. Close it (or use ``with``) when done."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, headers: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = calls.base_url_of(base_url)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(base_url=self.base_url + calls.API_PREFIX, timeout=timeout,
                                  headers=calls.default_headers(api_key, headers), transport=transport)
        self.runs = Runs(self)
        self.workflows = Workflows(self)
        self.agents = Agents(self)
        self.skills = Skills(self)
        self.errors = Errors(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def simulate(self, plan: dict[str, Any], *, inputs: dict[str, Any] | None = None,
                 agent_id: Any = None) -> Simulation:
        """Estimate a plan's cost, tokens and latency and check its budget and capabilities; nothing runs."""
        return self.call(calls.simulate(plan, inputs, agent_id))

    def inspect(self) -> Inspection:
        """Queue depths, workers seen, outbox and dead-letter counts (admin scope)."""
        return self.call(calls.inspect())

    # --- transport ---------------------------------------------------------------------------------------

    def call(self, c: calls.Call) -> Any:
        return c.parse(self.request(c.method, c.path, params=c.params, json=c.json), self)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        """Send one request (path below /api/v1) with retries; return the JSON answer or raise AosApiError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._http.request(method, path, params=params, json=json)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_error(attempt, method, exc)
                if delay is None:
                    raise ApiUnreachable(self.base_url, exc, method=method, url=path) from None
                time.sleep(delay)
                continue
            if resp.status_code < 400:
                return resp.json() if resp.content else None
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            delay = self.retry.delay_after_status(attempt, resp.status_code, retry_after)
            if delay is None:
                raise error_from_response(resp, retry_after)
            time.sleep(delay)

    def stream_events(self, run_id: Any, *, after_id: int | None = None, timeout: float | None = None,
                      max_reconnects: int = 5) -> Iterator[Event]:
        """See ``Runs.events``."""
        last_id = str(after_id) if after_id is not None else None
        deadline = time.monotonic() + timeout if timeout is not None else None
        failures = 0
        retry_s: float | None = None  # the server's `retry:` hint
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            read_s = calls.STREAM_READ_TIMEOUT_S
            if deadline is not None:
                read_s = max(0.05, min(read_s, deadline - time.monotonic()))
            delay: float | None = None
            try:
                with self._http.stream("GET", calls.events_path(run_id), headers=headers,
                                       timeout=httpx.Timeout(self._http.timeout.connect, read=read_s)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        delay = self.retry.delay_after_status(failures + 1, resp.status_code, retry_after)
                        if delay is None:
                            raise error_from_response(resp, retry_after)
                    else:
                        decoder = SSEDecoder(last_id)
                        for line in resp.iter_lines():
                            _check_deadline(deadline, timeout, run_id)
                            sse = decoder.feed(line)
                            if decoder.retry_ms is not None:
                                retry_s = decoder.retry_ms / 1000
                            if sse is not None or line.startswith(":"):
                                failures = 0  # an event or a keepalive: the stream works, reconnections start over
                            if sse is None:
                                continue
                            event = calls.stream_event(sse.event, sse.data, self)
                            yield event
                            if event.type == "end":
                                return
                            last_id = sse.id if sse.id is not None else str(event.id)
            except httpx.TransportError as exc:
                cause: Exception = exc
            else:
                cause = httpx.RemoteProtocolError("the event stream ended before the run's end event")
            # the stream broke or ended without `end` (a proxy or worker timeout): resume after the last id
            failures += 1
            _check_deadline(deadline, timeout, run_id)
            if failures > max_reconnects:
                raise ApiUnreachable(self.base_url, cause, method="GET", url=calls.events_path(run_id))
            time.sleep(delay if delay is not None else max(retry_s or 0.0, self.retry.backoff(failures)))


def _check_deadline(deadline: float | None, timeout: float | None, run_id: Any) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise RunWaitTimeout(str(run_id), timeout or 0.0)


class _Resource:
    def __init__(self, client: Client) -> None:
        self._c = client


class Runs(_Resource):
    def create(self, plan: dict[str, Any], *, inputs: dict[str, Any] | None = None, agent_id: Any = None) -> Run:
        """Submit a plan as a new run (``ValidationFailed`` with every problem when the plan is invalid)."""
        return self._c.call(calls.create_run(plan, inputs, agent_id))

    def get(self, run_id: Any) -> Run:
        return self._c.call(calls.get_run(run_id))

    def list(self, *, status: str | None = None, agent_id: Any = None, workflow: str | None = None,
             created_after: Any = None, created_before: Any = None,
             page_size: int | None = None) -> Paginator[RunSummary]:
        """Runs newest first, every page (lazily); ``page_size`` is the ``limit`` of each request."""
        return Paginator(lambda cursor: self.page(cursor=cursor, limit=page_size, status=status, agent_id=agent_id,
                                                  workflow=workflow, created_after=created_after,
                                                  created_before=created_before))

    def page(self, *, cursor: str | None = None, limit: int | None = None, **filters: Any) -> Page[RunSummary]:
        """One page of runs (filters as in ``list``)."""
        return self._c.call(calls.list_runs(cursor, limit, **filters))

    def timeline(self, run_id: Any, *, after_id: int | None = None) -> builtins.list[Event]:
        return self._c.call(calls.run_timeline(run_id, after_id))

    def step(self, run_id: Any, step_id: str) -> StepDetail:
        """A step with every attempt: args, output, error, cost, tokens, worker, timings."""
        return self._c.call(calls.get_step(run_id, step_id))

    def step_output(self, run_id: Any, step_id: str) -> Any:
        """The full output of the step's successful attempt (also when the run view shows only a reference)."""
        return self._c.call(calls.step_output(run_id, step_id))

    def cancel(self, run_id: Any) -> Run:
        return self._c.call(calls.cancel_run(run_id))

    def resume(self, run_id: Any) -> Run:
        return self._c.call(calls.resume_run(run_id))

    def signal(self, run_id: Any, name: str, data: Any = None, *, idempotency_key: str | None = None) -> SignalResult:
        """Deliver signal ``name`` with payload ``data`` to a waiting run (it becomes the waiting step's output).
        With ``idempotency_key``, sending it again answers as the first time and changes nothing."""
        return self._c.call(calls.signal_run(run_id, name, data, idempotency_key))

    def signals(self, run_id: Any) -> list[SignalRecord]:
        """Every wait of the run, oldest first, with the signal that ended it."""
        return self._c.call(calls.run_signals(run_id))


    def recovery(self, run_id: Any) -> list[RecoverySuggestion]:
        """The run's learned recovery suggestions, newest first."""
        return self._c.call(calls.run_recovery(run_id))

    def apply_recovery(self, run_id: Any, suggestion_id: Any) -> RecoverySuggestion:
        """Apply a suggestion (the run resumes from its failed step)."""
        return self._c.call(calls.apply_recovery(run_id, suggestion_id))

    def recovery_feedback(self, run_id: Any, suggestion_id: Any, *, helpful: bool,
                          note: str | None = None) -> RecoverySuggestion:
        return self._c.call(calls.recovery_feedback(run_id, suggestion_id, helpful, note))

    def wait(self, run_id: Any, *, timeout: float | None = None, poll_s: float = 0.25) -> Run:
        """Poll until the run is final and return it; ``RunWaitTimeout`` (with ``.last``) after ``timeout`` s."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        delay = poll_s
        while True:
            run = self.get(run_id)
            if run.is_final:
                return run
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise RunWaitTimeout(str(run_id), timeout or 0.0, run)
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - now)))
            delay = min(delay * 1.5, 2.0)

    def events(self, run_id: Any, *, after_id: int | None = None, timeout: float | None = None,
               max_reconnects: int = 5) -> Iterator[Event]:
        """The run's timeline events as they happen (server-sent events), from the first or after ``after_id``.

        The last item is an ``Event`` of type ``end`` whose ``run`` is the final RunSummary; then the iterator
        stops. A dropped connection is resumed with ``Last-Event-ID`` (no event lost or repeated).
        ``timeout`` bounds the whole stream (``RunWaitTimeout``)."""
        return self._c.stream_events(run_id, after_id=after_id, timeout=timeout, max_reconnects=max_reconnects)


class Workflows(_Resource):
    def save(self, name: str, plan: dict[str, Any]) -> Workflow:
        """Store ``plan`` as the next version of workflow ``name``."""
        return self._c.call(calls.save_workflow(name, plan))

    def list(self, *, page_size: int | None = None) -> Paginator[Workflow]:
        """The latest version of every workflow, every page (lazily)."""
        return Paginator(lambda cursor: self._c.call(calls.list_workflows(cursor, page_size)))

    def get(self, name: str, *, version: int | None = None) -> Workflow:
        return self._c.call(calls.get_workflow(name, version))

    def versions(self, name: str) -> builtins.list[Workflow]:
        return self._c.call(calls.workflow_versions(name))

    def run(self, name: str, *, version: int | None = None, inputs: dict[str, Any] | None = None,
            agent_id: Any = None) -> Run:
        return self._c.call(calls.run_workflow(name, version, inputs, agent_id))


class Agents(_Resource):
    def create(self, name: str, *, capabilities: dict[str, Any] | None = None) -> Agent:
        return self._c.call(calls.create_agent(name, capabilities))

    def list(self, *, page_size: int | None = None) -> Paginator[Agent]:
        return Paginator(lambda cursor: self._c.call(calls.list_agents(cursor, page_size)))

    def get(self, agent_id: Any) -> Agent:
        return self._c.call(calls.get_agent(agent_id))

    def runs(self, agent_id: Any, *, status: str | None = None, page_size: int | None = None) -> Paginator[RunSummary]:
        return Paginator(lambda cursor: self._c.call(calls.agent_runs(agent_id, cursor, page_size, status)))

    def run(self, agent_id: Any, run_id: Any) -> Run:
        return self._c.call(calls.agent_run(agent_id, run_id))

    def provenance(self, agent_id: Any, *, page_size: int | None = None) -> Paginator[Provenance]:
        return Paginator(lambda cursor: self._c.call(calls.agent_provenance(agent_id, cursor, page_size)))

    def state(self, agent_id: Any) -> AgentState:
        return self._c.call(calls.get_agent_state(agent_id))

    def set_state(self, agent_id: Any, state: dict[str, Any]) -> AgentState:
        """Replace the agent's state."""
        return self._c.call(calls.put_agent_state(agent_id, state))


class Skills(_Resource):
    def list(self, *, recommended: bool | None = None) -> builtins.list[Skill]:
        return self._c.call(calls.list_skills(recommended))


class Errors(_Resource):
    def list(self) -> builtins.list[CatalogEntry]:
        """The whole failure catalog."""
        return self._c.call(calls.list_errors())

    def get(self, code: str) -> CatalogEntry:
        """One catalog entry: category, retryable, recovery mode, HTTP status, what to do."""
        return self._c.call(calls.get_error(code))
