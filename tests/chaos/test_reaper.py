"""The reaper under load: a run whose step message is only waiting in a busy queue is not lost.

Found by the chaos tests: with a queue backlog longer than AOS_REAPER_GRACE_S (a burst of runs, a
slow worker pool, the minutes after a broker restart), the reaper takes every run still waiting for
its first message as silent and publishes it again. Each re-publish resets the run's clock and adds a
message to the same backlog, so the backlog grows by the number of waiting runs once per grace period:
under a long enough burst the queue diverges (one chaos run re-published 200 runs 494 times). Steps are
idempotent, so no result was wrong, but the work multiplied exactly when the system was busiest.
The reaper now asks the broker which silent runs still have a message in the step queue.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.engine.conftest import init_helper_process
from tests.support.broker import PrivateRedis

pytestmark = pytest.mark.chaos


def submit_runs(n: int) -> list[str]:
    """In the helper: a tenant and ``n`` one-step runs, published to the (unconsumed) step queue."""
    from aos.db.session import session_scope
    from aos.services.runs import submit_run
    from aos.services.tenancy import authenticate, create_api_key, create_tenant
    from aos.tasks.publisher import CeleryPublisher

    with session_scope() as s:
        t = create_tenant(s, f"reaper-{uuid.uuid4().hex[:6]}")
        key, _ = create_api_key(s, t, "k", ("runs:read", "runs:write"))
        ctx = authenticate(s, key)
    plan = {"name": "waiting", "steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
    return [str(submit_run(ctx, plan, CeleryPublisher())) for _ in range(n)]


def reap_and_drain() -> int:
    """In the helper: one round of beat's jobs aos.runs.reap and aos.outbox.drain (the task bodies, run
    here as a worker would run them)."""
    from aos.tasks.beat import drain, reap

    reaped = reap()
    drain()
    return reaped


@pytest.fixture
def isolated(servers, aos_env, tmp_path) -> Iterator[tuple[PrivateRedis, dict[str, str]]]:
    """A private broker nobody consumes and a database of its own (the reaper scans every tenant)."""
    from aos.db.migrate import upgrade

    broker = PrivateRedis(tmp_path / "redis").start()
    name = f"aos_reaper_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    upgrade(servers.database_url(name))
    env = {**aos_env, "AOS_DATABASE_URL": servers.database_url(name), "AOS_BROKER_URL": broker.url,
           "AOS_STEP_QUEUE": f"aos.steps.reaper.{uuid.uuid4().hex[:6]}", "AOS_REAPER_GRACE_S": "1"}
    yield broker, env
    broker.stop()
    servers.drop_database(name)


def test_the_reaper_leaves_runs_whose_message_is_still_queued_and_resumes_lost_ones(isolated):
    broker, env = isolated
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, initializer=init_helper_process, initargs=(env,)) as helper:
        run_ids = helper.apply_async(submit_runs, (5,)).get(timeout=60)
        queue = env["AOS_STEP_QUEUE"]
        assert broker.llen(queue) == 5  # one message per run, waiting: no worker consumes this queue
        time.sleep(1.5)  # longer than the grace: to the reaper the runs now look silent
        reaped = [helper.apply_async(reap_and_drain).get(timeout=60) for _ in range(2)]
        # Nothing was lost: every run's message is still in the queue. A reaper that re-publishes
        # them doubles the backlog.
        assert (reaped, broker.llen(queue)) == ([0, 0], len(run_ids))
        # Now the messages are gone (a broker that came back empty): each run is re-published once.
        broker.command("DEL", queue)
        reaped = [helper.apply_async(reap_and_drain).get(timeout=60) for _ in range(2)]
        assert (reaped, broker.llen(queue)) == ([len(run_ids), 0], len(run_ids))
