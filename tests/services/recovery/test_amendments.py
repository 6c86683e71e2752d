"""Applying suggestions that change the failed step: an audited amendment of that step of that run, run by a real
worker (whose cached plan of the run is older than the amendment), settled and counted; refusals change nothing;
a suggestion applied to a run that is then cancelled is abandoned, counted neither way."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from aos.db.session import session_scope
from aos.errors import AosError
from aos.golden.verify import encode
from aos.services import golden, recovery
from aos.services.runs import cancel_run, get_run, get_timeline, submit_run
from aos.services.tenancy import TenantContext, create_tenant
from aos.tasks.publisher import CeleryPublisher
from tests.golden.conftest import SECRET
from tests.services.recovery.helpers import failed_run, set_suggestion, wait_for_suggestion, word
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def _pattern(ctx, pattern_id: int) -> tuple[int, int]:
    p = next(p for p in recovery.list_patterns(ctx) if p["id"] == pattern_id)
    return p["success_count"], p["failure_count"]


def _stored(run_id) -> tuple:
    with session_scope() as s:
        return s.execute(text("SELECT plan, plan_hash, plan_revision, status, version, "
                              "(SELECT count(*) FROM run_amendments a WHERE a.run_id = r.id) FROM runs r "
                              "WHERE id = :r"), {"r": run_id}).one()


def test_a_longer_timeout_amends_the_step_and_the_run_succeeds(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=1.5)}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/slow")},
                           "timeout_s": 0.5, "retry": {"max_attempts": 1}}]}
        run_id = submit_run(ctx, plan, PUB)
        assert wait_for_run(run_id).status in ("failed", "dead_lettered"), worker.tail()
        sug = wait_for_suggestion(ctx, run_id)
        before = get_run(ctx, run_id)
        set_suggestion(sug["id"], "RETRY", {"timeout_s": 10})
        applied = recovery.apply_suggestion(ctx, run_id, sug["id"], PUB)
        assert applied["status"] == "applied" and applied["applied_by"] == "person"
        # the worker that ran the first attempt cached the plan of revision 0: the fence makes it read it again
        assert wait_for_run(run_id).status == "succeeded", worker.tail()
    run = get_run(ctx, run_id)
    assert run["plan_hash"] == before["plan_hash"]  # the submitted plan's
    [amended] = run["amendments"]
    assert amended["changes"] == {"timeout_s": {"from": 0.5, "to": 10}}
    assert amended["summary"] == f"step 0 (fetch) amended by suggestion {sug['id']}: timeout_s 0.5→10"
    assert (amended["after_attempt"], amended["plan_revision"], amended["applied_by"]) == (1, 1, "person")
    assert amended["step_hash_before"] != amended["step_hash_after"]
    assert [e["data"]["amendment_id"] for e in get_timeline(ctx, run_id) if e["type"] == "run.amended"] == \
        [amended["id"]]
    assert _stored(run_id)[0]["steps"][0]["timeout_s"] == 10
    recovery.settle_run(run_id)
    settled = recovery.list_for_run(ctx, run_id)[0]
    assert settled["status"] == "succeeded"
    if sug["pattern_id"] is not None:
        assert _pattern(ctx, sug["pattern_id"]) == (1, 0)


def test_args_invalid_against_the_skills_schema_change_nothing(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_BAD_REQUEST", f"GET https://example.com/{word()} returned 400")
    sug = recovery.suggest_for_run(run_id)
    set_suggestion(sug["id"], "RETRY", {"args": {"method": "FETCH"}, "timeout_s": 60})
    stored = _stored(run_id)
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    assert err.value.code == "AMENDMENT_INVALID"
    assert [(p["path"], p["code"]) for p in err.value.problems] == [("$.steps[0].args.method", "SKILL_ARGS_INVALID")]
    assert _stored(run_id) == stored  # plan, hash, revision, status, version: no amendment row either
    assert recovery.list_for_run(ctx, run_id)[0]["status"] == "offered"


def test_an_unknown_fallback_skill_is_refused_and_abort_says_what_to_do(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_NOT_FOUND", f"GET https://example.com/{word()} returned 404")
    sug = recovery.suggest_for_run(run_id)
    assert sug["mode"] == "ABORT"
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    assert err.value.code == "SUGGESTION_NOT_APPLICABLE" and "submit it as a new run" in err.value.message
    set_suggestion(sug["id"], "FALLBACK", {"fallback_skill": "no.such_skill"})
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    assert err.value.code == "AMENDMENT_INVALID"
    assert err.value.problems[0]["path"] == "$.steps[0].on_error.fallback.skill"
    assert _stored(run_id)[2] == 0


def test_a_fallback_skill_answers_the_failed_step_and_the_golden_file_carries_the_amendment(tenant, worker,
                                                                                          settings_env):
    settings_env(AOS_GOLDEN_SECRET=SECRET, AOS_GOLDEN_KEY_ID="test-k1")
    ctx, _ = tenant
    with serve_http({"/gone": Reply(404, json={"error": "gone"})}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/gone")}}]}
        run_id = submit_run(ctx, plan, PUB)
        assert wait_for_run(run_id).status in ("failed", "dead_lettered"), worker.tail()
        sug = wait_for_suggestion(ctx, run_id)
        set_suggestion(sug["id"], "FALLBACK", {"fallback_skill": "json.transform",
                                         "args": {"input": {"cached": "yes"}, "expr": "cached"}})
        recovery.apply_suggestion(ctx, run_id, sug["id"], PUB)
        assert wait_for_run(run_id).status == "succeeded", worker.tail()
    run = get_run(ctx, run_id)
    assert run["steps"][0]["output"] == "yes"
    assert run["amendments"][0]["changes"]["fallback_skill"]["to"] == "json.transform"
    doc = golden.record_run(ctx, run_id)
    body = doc["body"]
    assert body["plan_hash"] == run["plan_hash"]
    assert body["plan"]["steps"][0]["on_error"]["fallback"]["skill"] == "json.transform"
    [recorded] = body["amendments"]
    assert (recorded["step_id"], recorded["after_attempt"]) == ("fetch", 1)
    assert set(recorded) == {"step_index", "step_id", "after_attempt", "changes", "step_hash_before",
                             "step_hash_after"}
    assert golden.verify(ctx, doc, encode(doc)).steps == 1
    assert golden.record_run(ctx, run_id) == doc  # nothing time- or place-dependent


def test_another_tenants_plan_changing_suggestion_is_not_found(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    sug = recovery.suggest_for_run(run_id)
    set_suggestion(sug["id"], "RETRY", {"timeout_s": 60})
    with session_scope() as s:
        other = create_tenant(s, f"o-{word()}").id
    octx = TenantContext(tenant_id=other, tenant_name="o", key_id=None, scopes=frozenset({"admin"}))
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(octx, run_id, sug["id"], None)
    assert err.value.code == "NOT_FOUND"
    assert _stored(run_id)[2] == 0


def test_applied_then_cancelled_is_abandoned_and_counts_neither_way(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    sug = recovery.suggest_for_run(run_id)
    counts = _pattern(ctx, sug["pattern_id"])
    recovery.apply_suggestion(ctx, run_id, sug["id"], None)  # no publisher: the run stays queued
    cancel_run(ctx, run_id, None)
    assert recovery.settle_run(run_id) == 1
    got = recovery.list_for_run(ctx, run_id)[0]
    assert got["status"] == "abandoned" and got["settled_at"] is not None
    assert _pattern(ctx, sug["pattern_id"]) == counts


def test_a_plan_cached_before_the_amendment_can_neither_claim_the_step_nor_be_served(tenant):
    from decimal import Decimal

    from aos.db import direct, step_store
    from aos.db.scope import as_tenant
    from aos.services import enqueue

    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out", timeout_s=5)
    sug = recovery.suggest_for_run(run_id)
    stale = enqueue.run_plan(run_id)  # this process caches the plan as submitted
    assert (stale.revision, stale.timeouts) == (0, (5,))
    set_suggestion(sug["id"], "RETRY", {"timeout_s": 60})
    recovery.apply_suggestion(ctx, run_id, sug["id"], None)  # queued, not published
    assert enqueue.run_plan(run_id) is stale  # no revision asked: the cache answers
    fresh = enqueue.run_plan(run_id, revision=1)  # what a refused claim (or the publisher) asks for
    assert (fresh.revision, fresh.timeouts) == (1, (60,))

    def claim(revision: int):
        req = step_store.ClaimRequest(run_id=run_id, index=0, step_id="fetch", skill="http.request@1", worker="w",
                                      takeover=(), lease_s=60, cost_usd=Decimal(0), tokens=0, plan_revision=revision)
        with as_tenant(ctx.tenant_id), direct.relaxed() as conn:
            return step_store.claim(conn, req), step_store.run_state(conn, run_id, 0)

    refused, state = claim(0)
    assert refused is None and state["plan_revision"] == 1 and state["status"] == "queued"
    assert claim(1)[0] is not None


def test_auto_apply_never_amends_a_plan(tenant):
    from aos.config import get_settings
    from aos.services.recovery.cache import namespace, redis_client

    ctx, _ = tenant
    recovery.update_settings(ctx, auto_apply=True)
    message = f"GET https://api.example.com/{word()} timed out"
    first = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", message))
    assert first["status"] == "applied" and first["parameters"].get("timeout_s") is None  # timing only: applied
    with session_scope() as s:  # the pattern learned a longer timeout (what a model writer may answer)
        s.execute(text("UPDATE failure_patterns SET recovery = recovery || CAST(:r AS jsonb) WHERE id = :p"),
                  {"r": json.dumps({"mode": "RETRY", "parameters": {"timeout_s": 120}}), "p": first["pattern_id"]})
    client = redis_client(get_settings())
    if client is not None:  # the next lookup reads the pattern from Postgres, as after a cache expiry
        for key in client.scan_iter(f"aos:recovery:{namespace(get_settings())}:exact:*"):
            client.delete(key)
    run_id = failed_run(ctx, "HTTP_TIMEOUT", message)
    again = recovery.suggest_for_run(run_id)
    assert again["parameters"] == {"timeout_s": 120} and again["status"] == "offered"
    assert _stored(run_id)[2:4] == (0, "failed")
