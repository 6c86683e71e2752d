"""/inspect against the real broker and worker: a tenant sees its own counts only; the operator scope sees queue
depths, live workers and every tenant's counts."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from celery import Celery
from sqlalchemy import update

from aos.db.models import DeadLetter, OutboxMessage
from aos.db.session import session_scope
from aos.services.inspect import inspect_system
from aos.services.runs import submit_run
from aos.tasks.app import app as celery_app
from aos.tasks.inspect import CeleryBrokerInspector
from tests.web.api_helpers import TRANSFORM_PLAN, auth, new_caller, new_tenant


@pytest.mark.parametrize("caller", ["key", "jwt"])
def test_a_tenant_sees_only_its_own_counts_and_no_queues_or_workers(client, worker, aos_env, settings_env, caller):
    ctx, cred = new_caller(caller, settings_env, ("runs:read",))
    other, _ = new_tenant()
    for c in (ctx, other, other):
        submit_run(c, TRANSFORM_PLAN, None)  # not published: a pending outbox row and a queued run each
    with session_scope() as s:
        s.add(DeadLetter(tenant_id=ctx.tenant_id, kind="step", payload={}, error_code="STEP_TIMEOUT"))
        s.add(DeadLetter(tenant_id=other.tenant_id, kind="step", payload={}, error_code="STEP_TIMEOUT"))
        s.execute(update(OutboxMessage).where(OutboxMessage.tenant_id == other.tenant_id).values(status="dead"))
    time.sleep(0.05)
    r = client.get("/api/v1/inspect", headers=auth(cred))
    assert r.status_code == 200, r.json
    body = r.json
    assert body["scope"] == "tenant" and body["queues"] is None and body["workers"] is None
    assert body["outbox"]["pending"] == 1 and body["outbox"]["dead"] == 0
    assert body["outbox"]["oldest_pending_age_s"] > 0
    assert body["dead_letters"] == {"open": 1} and body["runs"] == {"queued": 1, "running": 0}
    assert body["errors"] == [] and body["checked_at"]


def test_the_operator_sees_workers_queues_and_every_tenants_counts(client, worker, aos_env):
    _, operator = new_tenant(("operator",))
    a, _ = new_tenant()
    b, _ = new_tenant()
    before = client.get("/api/v1/inspect", headers=auth(operator)).json
    for c in (a, b):
        submit_run(c, TRANSFORM_PLAN, None)
    started = time.monotonic()
    r = client.get("/api/v1/inspect", headers=auth(operator))
    assert time.monotonic() - started < 10
    assert r.status_code == 200, r.json
    body = r.json
    assert body["scope"] == "deployment"
    assert worker.name in " ".join(w["name"] for w in body["workers"])
    assert aos_env["AOS_STEP_QUEUE"] in {q["name"] for q in body["queues"]}
    assert all(isinstance(q["depth"], int) for q in body["queues"])
    assert body["runs"]["queued"] >= before["runs"]["queued"] + 2  # both tenants' runs


def test_inspect_needs_a_scope(client, aos_env):
    _, no_scope = new_tenant(())
    r = client.get("/api/v1/inspect", headers=auth(no_scope))
    assert r.status_code == 403 and r.json["code"] == "FORBIDDEN_SCOPE"


def test_queue_depth_counts_waiting_messages_of_a_queue(aos_env):
    queue = f"aos.test.depth.{uuid.uuid4().hex[:8]}"
    inspector = CeleryBrokerInspector(queues=[queue], timeout_s=2)
    assert inspector.queue_depths() == [{"name": queue, "depth": 0}]
    for _ in range(3):
        celery_app.send_task("aos.test.nothing", queue=queue)
    try:
        assert inspector.queue_depths() == [{"name": queue, "depth": 3}]
    finally:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_broker_is_reported_not_raised_and_does_not_hang(aos_env):
    ctx, _ = new_tenant(("operator",))
    down = Celery("down", broker=f"redis://127.0.0.1:{_dead_port()}/0")
    down.conf.broker_connection_timeout = 1
    started = time.monotonic()
    report = inspect_system(ctx, CeleryBrokerInspector(timeout_s=1, queues=["aos.steps"], celery_app=down))
    assert time.monotonic() - started < 12
    assert report["queues"] is None and report["errors"] and report["errors"][0].startswith("broker:")
    assert set(report["runs"]) == {"queued", "running"}
