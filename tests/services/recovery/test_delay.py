"""A retry suggestion's ``delay_s`` holds the failed step back: applied by a person or by auto-apply, the step's next
attempt starts no earlier than ``delay_s`` after the suggestion was applied, and the run shows the step retrying
until then. Real worker, real outbox: the test drains the outbox as beat does."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sqlalchemy import text

from aos.config import get_settings
from aos.db.session import session_scope
from aos.services import recovery
from aos.services.outbox import drain_outbox
from aos.services.recovery.cache import namespace, redis_client
from aos.services.runs import get_run, get_timeline, submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.services.recovery.helpers import drain_until_final, set_suggestion, wait_for_suggestion
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()
FAILED = ("failed", "dead_lettered")


def _rate_limited_then_ok(failures: int):  # noqa: ANN202 — a serve_http handler
    """429 for the first ``failures`` requests, then 200."""
    count = itertools.count()
    return lambda req: Reply(429, json={"error": "slow down"}) if next(count) < failures else Reply(json={"ok": True})


def _plan(url: str) -> dict:
    return {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": url}, "retry": {"max_attempts": 1}}]}


def _forget_cached_suggestions() -> None:
    """The next lookup reads the tenant's patterns from Postgres, as after a cache expiry (and no other tenant's
    deployment-wide answer stands in for the tenant's own)."""
    client = redis_client(get_settings())
    if client is not None:
        for key in client.scan_iter(f"aos:recovery:{namespace(get_settings())}:exact:*"):
            client.delete(key)


def _second_attempt_started(run_id) -> datetime:
    with session_scope() as s:
        return s.execute(text("SELECT started_at FROM checkpoints WHERE run_id = :r AND step_index = 0 "
                              "AND attempt = 2"), {"r": run_id}).scalar_one()


def test_applying_a_retry_after_waits_its_delay_before_the_step_runs_again(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/limited": _rate_limited_then_ok(1)}) as srv:
        run_id = submit_run(ctx, _plan(srv.url("/limited")), PUB)
        assert wait_for_run(run_id).status in FAILED, worker.tail()
        sug = wait_for_suggestion(ctx, run_id)
        set_suggestion(sug["id"], "RETRY_AFTER", {"delay_s": 2})
        applied = recovery.apply_suggestion(ctx, run_id, sug["id"], PUB)
        applied_at = datetime.fromisoformat(applied["applied_at"])
        due = applied_at + timedelta(seconds=2)
        drain_outbox(PUB)  # a beat tick right away publishes nothing yet
        step = get_run(ctx, run_id)["steps"][0]
        assert (step["status"], step["next_attempt_at"]) == ("retrying", due.isoformat())
        [resumed] = [e for e in get_timeline(ctx, run_id) if e["type"] == "run.resumed"]
        assert resumed["data"]["resumes_at"] == due.isoformat()
        assert drain_until_final(run_id, PUB) == "succeeded", worker.tail()
    assert _second_attempt_started(run_id) >= due
    assert get_run(ctx, run_id)["steps"][0]["next_attempt_at"] is None


def test_auto_apply_waits_the_delay_too(tenant, worker):
    ctx, _ = tenant
    _forget_cached_suggestions()
    with serve_http({"/limited": _rate_limited_then_ok(2)}) as srv:
        # the first failure teaches the tenant a pattern; it then says to wait 2 s (the offline writer says 30)
        first = submit_run(ctx, _plan(srv.url("/limited")), PUB)
        assert wait_for_run(first).status in FAILED, worker.tail()
        pattern = wait_for_suggestion(ctx, first)["pattern_id"]
        with session_scope() as s:
            s.execute(text("UPDATE failure_patterns SET recovery = jsonb_set(recovery, '{parameters}', "
                           "'{\"delay_s\": 2}') WHERE id = :p"), {"p": pattern})
        _forget_cached_suggestions()
        recovery.update_settings(ctx, auto_apply=True)
        run_id = submit_run(ctx, _plan(srv.url("/limited")), PUB)
        applied = wait_for_suggestion(ctx, run_id, status="applied")  # by the worker's suggest task
        assert (applied["applied_by"], applied["parameters"]) == ("auto", {"delay_s": 2})
        assert drain_until_final(run_id, PUB) == "succeeded", worker.tail()
    assert _second_attempt_started(run_id) >= datetime.fromisoformat(applied["applied_at"]) + timedelta(seconds=2)
