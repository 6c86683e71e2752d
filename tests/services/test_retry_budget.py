"""Retries after a person steps in, and how a step waiting for its retry reads.

Real worker, real Postgres and Redis; the dependency is a local HTTP server that fails until told not to.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from aos.db.models import Checkpoint, DeadLetter
from aos.db.session import session_scope
from aos.services import dead_letters
from aos.services.failures import RETRIES_USED_UP
from aos.services.runs import get_run, resume_run, submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def _failing(_req):
    return Reply(500, json={"error": "down"})


def _attempts(run_id: uuid.UUID) -> list[tuple[int, str]]:
    with session_scope() as s:
        return [(c.attempt, c.status) for c in s.scalars(
            select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.attempt))]


def _plan(url: str) -> dict:
    return {"steps": [{"id": "fetch", "skill": "http.request", "args": {"method": "POST", "url": url, "json": {}},
                       "retry": {"max_attempts": 2, "backoff_s": 0.05}}]}


def test_resume_gives_the_step_a_fresh_retry_budget(worker, tenant):
    ctx, _ = tenant
    with serve_http({"POST /dep": _failing}) as srv:
        run_id = submit_run(ctx, _plan(srv.url("/dep")), PUB)
        assert wait_for_run(run_id).status == "dead_lettered"  # out of attempts, a dead letter left
        assert _attempts(run_id) == [(1, "failed"), (2, "failed")]
        view = get_run(ctx, run_id)
        # retries are used up: the advice is what a person can do now, not "it is retried"
        assert view["error"]["code"] == "HTTP_SERVER_ERROR" and view["error"]["suggestion"] == RETRIES_USED_UP
        assert view["steps"][0]["status"] == "failed" and view["steps"][0]["next_attempt_at"] is None

        resume_run(ctx, run_id, PUB)
        assert wait_for_run(run_id).status == "dead_lettered"  # out of attempts, a dead letter left
        # two more attempts (the policy's budget again), numbered on: 3 and 4, not a single attempt 3
        assert _attempts(run_id) == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "failed")]
        assert len(srv.requests) == 4
        keys = [r.headers.get("idempotency-key") for r in srv.requests]
        assert len(set(keys)) == 4  # each attempt keeps its own key


def test_a_dead_letter_replay_gives_the_step_a_fresh_retry_budget(worker, tenant):
    ctx, _ = tenant
    with serve_http({"POST /dep": _failing}) as srv:
        run_id = submit_run(ctx, _plan(srv.url("/dep")), PUB)
        assert wait_for_run(run_id).status == "dead_lettered"  # out of attempts, a dead letter left
        with session_scope() as s:
            (dl_id,) = s.scalars(select(DeadLetter.id).where(DeadLetter.run_id == run_id)).all()
        dead_letters.replay(dl_id, tenant_id=ctx.tenant_id, publisher=PUB)
        assert wait_for_run(run_id).status == "dead_lettered"  # out of attempts, a dead letter left
        assert [a for a, _ in _attempts(run_id)] == [1, 2, 3, 4]


def test_a_step_waiting_for_its_retry_shows_as_retrying_with_its_next_attempt_time(worker, tenant):
    ctx, _ = tenant
    def busy(_req):  # the server names the wait, so the retry is due in exactly 3 s
        return Reply(429, json={"error": "busy"}, headers={"Retry-After": "3"})

    with serve_http({"GET /dep": busy}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/dep")},
                           "retry": {"max_attempts": 2}}]}
        run_id = submit_run(ctx, plan, PUB)
        deadline = time.monotonic() + 20
        while True:
            step = get_run(ctx, run_id)["steps"][0]
            if step["status"] != "pending" and step["status"] != "running":
                break
            assert time.monotonic() < deadline, step
            time.sleep(0.05)
        assert step["status"] == "retrying", step
        assert step["error"]["code"] == "RATE_LIMITED", step["error"]
        due = datetime.fromisoformat(step["next_attempt_at"])
        assert 1 < (due - datetime.now(UTC)).total_seconds() <= 3.5
        assert get_run(ctx, run_id)["status"] == "running"
        assert wait_for_run(run_id, timeout=30).status == "dead_lettered"
        assert get_run(ctx, run_id)["steps"][0]["status"] == "failed"
