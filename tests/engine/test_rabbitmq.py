"""RabbitMQ as the broker (SPEC §4.9): a run goes through a real worker on AMQP, and the reaper, which
cannot look into an AMQP queue, leaves a run whose message is waiting there.

The broker is ``AOS_TEST_AMQP_URL`` (default: the python-svc machine's RabbitMQ, guest/guest on
127.0.0.1:5672). A machine without one skips these tests and says so; the rest of the suite runs on Redis.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.chaos.test_reaper import reap_and_drain, submit_runs
from tests.engine.conftest import init_helper_process
from tests.support.worker import WorkerProcess

AMQP_URL = os.environ.get("AOS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _reachable(AMQP_URL),
                                reason=f"no RabbitMQ at {AMQP_URL} (set AOS_TEST_AMQP_URL to one)")


def _waiting(run_ids: list[str]) -> set[str] | None:
    """In the helper: the reaper's question to the broker."""
    from aos.tasks.inspect import CeleryStepQueue

    return CeleryStepQueue().runs_waiting(run_ids)


def _status(run_id: str) -> str:
    from aos.db.models import Run
    from aos.db.session import session_scope

    with session_scope() as s:
        return s.get(Run, uuid.UUID(run_id)).status


def _delete_queue(name: str) -> None:
    from aos.tasks.app import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)


@pytest.fixture
def amqp_env(servers, aos_env) -> Iterator[dict[str, str]]:
    """AMQP as the broker, a step queue and a database of their own (the reaper scans every tenant)."""
    from aos.db.migrate import upgrade

    name = f"aos_amqp_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    upgrade(servers.database_url(name))
    env = {**aos_env, "AOS_DATABASE_URL": servers.database_url(name), "AOS_BROKER_URL": AMQP_URL,
           "AOS_STEP_QUEUE": f"aos.steps.amqp.{uuid.uuid4().hex[:6]}", "AOS_REAPER_GRACE_S": "1"}
    yield env
    servers.drop_database(name)


def test_a_run_succeeds_on_rabbitmq_and_the_reaper_leaves_its_queued_message(amqp_env, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    worker = WorkerProcess(amqp_env, tmp_path, name=f"amqp-{uuid.uuid4().hex[:6]}")
    with ctx.Pool(1, initializer=init_helper_process, initargs=(amqp_env,)) as helper:
        try:
            [run_id] = helper.apply_async(submit_runs, (1,)).get(timeout=60)
            time.sleep(1.5)  # past the grace, and nobody consumes the queue yet
            # AMQP cannot be looked into: with a message waiting, the broker cannot say whose it is …
            assert helper.apply_async(_waiting, ([run_id],)).get(timeout=30) is None
            # … so the reaper waits ten grace periods instead of doubling the backlog
            assert helper.apply_async(reap_and_drain).get(timeout=60) == 0
            worker.start()
            deadline = time.monotonic() + 60
            while (status := helper.apply_async(_status, (run_id,)).get(timeout=30)) != "succeeded":
                assert status in ("queued", "running") and time.monotonic() < deadline, (status, worker.tail())
                time.sleep(0.2)
            # an empty queue is an answer on any broker: nothing of this run waits
            assert helper.apply_async(_waiting, ([run_id],)).get(timeout=30) == set()
        finally:
            worker.stop()
            helper.apply_async(_delete_queue, (amqp_env["AOS_STEP_QUEUE"],)).get(timeout=30)
