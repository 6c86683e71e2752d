"""Recovery through a real worker: learned on the first failure, a cache hit on the second, a similar-pattern hit
on a reworded one; applying the suggestion resumes the run and its success raises the pattern's success rate."""

from __future__ import annotations

import time

from aos.services import recovery
from aos.services.runs import get_run, get_timeline, submit_run
from aos.tasks.app import app
from aos.tasks.publisher import CeleryPublisher
from aos.tasks.recovery import SETTLE_TASK
from tests.services.recovery.helpers import drain_until_final
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def _suggestion(ctx, run_id, timeout: float = 30.0, status: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = recovery.list_for_run(ctx, run_id)
        if got and (status is None or got[0]["status"] == status):
            return got[0]
        assert time.monotonic() < deadline, f"no suggestion ({status or 'any'}) for run {run_id}: {got}"
        time.sleep(0.2)


def _failing_run(ctx, url: str, method: str = "GET"):
    plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"method": method, "url": url},
                       "retry": {"max_attempts": 1}}]}
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).status in ("failed", "dead_lettered")  # out of attempts on a retryable code: a dead letter
    return run_id


def _forget_deployment_wide_suggestions() -> None:
    """Other tests of the session (other tenants) may have taught the deployment-wide cache this very failure
    (an HTTP 503 of a local URL): this test starts from a deployment that has learned nothing yet."""
    from aos.config import get_settings
    from aos.services.recovery.cache import GLOBAL, namespace, redis_client

    settings = get_settings()
    client = redis_client(settings)
    if client is not None:
        for key in client.scan_iter(f"aos:recovery:{namespace(settings)}:exact:{GLOBAL}:*"):
            client.delete(key)


def test_a_failure_is_learned_then_answered_by_cache_and_similarity_and_success_counts(tenant, worker, aos_env):
    ctx, _ = tenant
    replies = {"status": 503}
    _forget_deployment_wide_suggestions()
    with serve_http({"/upstream": lambda req: Reply(replies["status"], json={"ok": replies["status"] == 200})}) as srv:
        url = srv.url("/upstream")
        first_run = _failing_run(ctx, url)
        first = _suggestion(ctx, first_run)
        assert (first["layer"], first["error_code"], first["mode"]) == ("llm", "HTTP_SERVICE_UNAVAILABLE", "RETRY")
        assert first["metadata"]["provider"] == "offline" and first["pattern_id"]
        announced = [e for e in get_timeline(ctx, first_run) if e["type"] == "run.recovery"]
        assert [e["data"]["suggestion_id"] for e in announced] == [first["id"]]  # and it leaves as a webhook

        again = _suggestion(ctx, _failing_run(ctx, url + "?page=2"))
        assert again["layer"] == "cache" and again["pattern_id"] == first["pattern_id"]

        reworded = _suggestion(ctx, _failing_run(ctx, url, method="POST"))
        assert reworded["layer"] == "vector" and reworded["pattern_id"] == first["pattern_id"]
        assert reworded["similarity"] >= 0.90

        replies["status"] = 200  # the upstream is back: applying the suggestion (a retry) now works
        applied = recovery.apply_suggestion(ctx, first_run, first["id"], PUB)
        assert applied["status"] == "applied" and applied["applied_by"] == "person"
        assert first["parameters"]["delay_s"] == 5  # the retry waits for it: the outbox publishes the run then
        assert drain_until_final(first_run, PUB) == "succeeded"
    app.send_task(SETTLE_TASK, queue=aos_env["AOS_STEP_QUEUE"])  # what beat sends every AOS_RECOVERY_VERIFY_S
    settled = _suggestion(ctx, first_run, status="succeeded")
    assert settled["success_rate"] == 1.0
    pattern = next(p for p in recovery.list_patterns(ctx) if p["id"] == first["pattern_id"])
    assert (pattern["success_count"], pattern["failure_count"]) == (1, 0)
    assert get_run(ctx, first_run)["status"] == "succeeded"
