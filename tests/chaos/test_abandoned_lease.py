"""A step whose worker lost the database after claiming it must not wait out its whole lease.

Found by the Postgres-restart chaos test (a run stalled for minutes): ``aos.steps.execute`` retries a
delivery that hit an ``OperationalError`` *after* the claim committed (resolving args, or writing the
checkpoint). The claim — lease owner, lease = step timeout + grace — stays in Postgres. The retry used
to see a live lease held by someone else and wait until it expired, although the owner had given the
step up: 124 s for an ``llm.complete`` step with the chaos settings, 135 s with the defaults, during
which nobody executed the step. Now each delivery is its own lease owner and the retry message names
the deliveries that gave up, so it takes their lease over at once.

The test provokes exactly that: the worker's statement timeout is 1 s and the test holds the run's
row lock while the step's HTTP call is in flight, so writing the checkpoint fails; the first worker
is then stopped (its pending retry goes back to the queue) and a second one takes the retry.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests.engine.conftest import init_helper_process
from tests.support.broker import PrivateRedis
from tests.support.http_server import Reply, serve_http
from tests.support.worker import WorkerProcess, wait_for_run

pytestmark = pytest.mark.chaos

LONG_TIMEOUT_S = 60  # lease = 60 + AOS_HARD_TIMEOUT_GRACE_S (3) + AOS_LEASE_GRACE_S (1) = 64 s


def _submit(key: str, plan: dict) -> str:
    from aos.web.app import create_app

    resp = create_app().test_client().post("/api/v1/runs", json={"plan": plan},
                                          headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


@pytest.fixture
def broker(tmp_path) -> Iterator[PrivateRedis]:
    b = PrivateRedis(tmp_path / "redis").start()
    yield b
    b.stop()


def test_a_retry_after_a_database_error_takes_over_its_own_lease(aos_env, tenant, broker, tmp_path):
    from aos.db.session import session_scope

    _, key = tenant
    env = {**aos_env, "AOS_BROKER_URL": broker.url, "AOS_STEP_QUEUE": f"aos.steps.lease.{uuid.uuid4().hex[:6]}"}
    first = WorkerProcess({**env, "AOS_DB_STATEMENT_TIMEOUT_MS": "1000"}, tmp_path, name="first", concurrency=1)
    second = WorkerProcess(env, tmp_path, name="second", concurrency=1)
    in_flight = threading.Event()

    def slow(_req):
        in_flight.set()
        return Reply(json={"ok": True}, delay_s=1.0)

    ctx = multiprocessing.get_context("spawn")
    try:
        first.start()
        with serve_http({"POST /slow": slow}) as srv, \
                ctx.Pool(1, initializer=init_helper_process, initargs=(env,)) as api:
            plan = {"name": "abandoned-lease", "steps": [
                {"id": "call", "skill": "http.request", "timeout_s": LONG_TIMEOUT_S,
                 "args": {"method": "POST", "url": srv.url("/slow"), "json": {}}},
                {"id": "after", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
            run_id = uuid.UUID(api.apply_async(_submit, (key, plan)).get(timeout=60))
            assert in_flight.wait(30), first.tail()
            with session_scope() as s:  # hold the run's row lock: writing the checkpoint times out
                s.execute(text("SELECT 1 FROM runs WHERE id = :r FOR UPDATE"), {"r": run_id})
                deadline = time.monotonic() + 20
                while "OperationalError" not in first.tail(100_000):
                    assert time.monotonic() < deadline, first.tail()
                    time.sleep(0.1)
                first.stop()  # warm shutdown: the pending retry goes back to the queue
            second.start()
            # the retry takes the step over at once, instead of waiting out the 64 s lease
            run = wait_for_run(run_id, timeout=10)
            assert run.status == "succeeded", (run.error_code, run.error_message, second.tail())
    finally:
        first.stop()
        second.stop()
