"""The circuit breaker through real workers: a local upstream fails, the breaker opens, steps fail fast without
spending attempts, the half-open probe reopens it while the upstream is down and closes it once it is back."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from aos.db.models import Checkpoint
from aos.db.session import session_scope
from aos.services.runs import get_run, get_timeline, submit_run
from tests.ops.conftest import QueuePublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import WorkerProcess, wait_for_run

QUEUE = f"aos.steps.circuit.{uuid.uuid4().hex[:8]}"
COOLDOWN_S = 1.5
BREAKER = {"AOS_STEP_QUEUE": QUEUE, "AOS_CIRCUIT_FAILURES": "3", "AOS_CIRCUIT_WINDOW_S": "60",
           "AOS_CIRCUIT_COOLDOWN_S": str(COOLDOWN_S)}


@pytest.fixture(scope="module")
def breaker_workers(aos_env, tmp_path_factory):
    """Two prefork workers (2 processes each) on a queue of their own, with a breaker that opens quickly:
    the state they share is only what Redis holds."""
    workers = [WorkerProcess({**aos_env, **BREAKER}, tmp_path_factory.mktemp("cb"), name=f"cb{i}-{uuid.uuid4().hex[:4]}")
               for i in range(2)]
    for w in workers:
        w.start()
    yield workers
    for w in workers:
        w.stop()


@pytest.fixture
def publisher():
    """The test process publishes a run's chain to the breaker workers' queue (their own publishes go there
    by their settings)."""
    return QueuePublisher(QUEUE)


class Upstream:
    def __init__(self) -> None:
        self.up = False
        self.hits = 0

    def __call__(self, _req):
        self.hits += 1
        return Reply(200, json={"ok": True}) if self.up else Reply(503, json={"error": "down"})


def _types(ctx, run_id) -> list[str]:
    return [e["type"] for e in get_timeline(ctx, run_id)]


def _wait_for_event(ctx, run_id, type_: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while type_ not in _types(ctx, run_id):
        assert time.monotonic() < deadline, (type_, _types(ctx, run_id))
        time.sleep(0.05)


def test_breaker_opens_fails_fast_reopens_on_a_failed_probe_and_closes_when_the_upstream_recovers(
        tenant, breaker_workers, publisher):
    ctx, _ = tenant
    upstream = Upstream()
    with serve_http({"/api": upstream}) as srv:
        step = {"id": "call", "skill": "http.request", "args": {"url": srv.url("/api")},
                "retry": {"max_attempts": 10, "backoff_s": 0.05, "backoff_max_s": 0.1}}
        first = submit_run(ctx, {"steps": [step]}, publisher)
        _wait_for_event(ctx, first, "circuit.opened")
        assert upstream.hits == 3  # N retryable failures opened it

        # another run, on any worker, fails fast: the upstream is not called, no attempt is spent
        second = submit_run(ctx, {"steps": [step]}, publisher)
        _wait_for_event(ctx, second, "step.deferred")
        assert upstream.hits == 3

        # after the cool-down one probe goes through; the upstream is still down: open again
        deadline = time.monotonic() + COOLDOWN_S + 20
        while upstream.hits < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert upstream.hits == 4  # one probe, not one call per waiting step
        upstream.up = True
        assert wait_for_run(first, timeout=30).status == "succeeded"
        assert wait_for_run(second, timeout=30).status == "succeeded"

    events = _types(ctx, first) + _types(ctx, second)
    assert events.count("circuit.opened") == 2  # by the third failure, then by the failed probe
    assert events.count("circuit.half_open") == 2 and events.count("circuit.closed") == 1
    for run_id in (first, second):
        view = get_run(ctx, run_id)
        with session_scope() as s:
            failed = s.scalar(select(func.count()).select_from(Checkpoint).where(
                Checkpoint.run_id == run_id, Checkpoint.status == "failed"))
        # every attempt that was made called the upstream: deferrals spent none
        assert view["steps"][0]["attempts"] == failed + 1
        assert "step.redelivered" not in _types(ctx, run_id)
    # 3 failures, the failed probe, the probe that closed it, the other run's call once it was closed
    assert upstream.hits == 6
    logs = "".join(w.tail(200_000) for w in breaker_workers)
    assert "circuit http.request 127.0.0.1:" in logs and ": opened" in logs and ": closed" in logs

