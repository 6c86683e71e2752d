"""Success tracking, escalation under the floor, feedback, and the refusals of apply."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import recovery
from aos.services.tenancy import TenantContext, create_tenant
from tests.services.recovery.helpers import failed_run, word


def _apply_and_fail_again(ctx, run_id, suggestion_id, message: str) -> None:
    """Apply (no publisher: the run is queued, not executed) and then fail the run at the same step again."""
    recovery.apply_suggestion(ctx, run_id, suggestion_id, None)
    with session_scope() as s:
        s.execute(text("UPDATE runs SET status = 'failed', attempt = attempt + 1, error_code = 'HTTP_TIMEOUT', "
                       "error_message = :m, updated_at = now() WHERE id = :r"), {"r": run_id, "m": message})


def test_a_pattern_pushed_under_the_floor_escalates_to_the_llm(tenant, settings_env):
    settings_env(AOS_RECOVERY_MIN_USES="2", AOS_RECOVERY_SUCCESS_FLOOR="0.9")
    ctx, _ = tenant
    message = f"GET https://api.example.com/x {word()} timed out"
    first = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", message))
    for _ in range(2):
        run_id = failed_run(ctx, "HTTP_TIMEOUT", message)
        hit = recovery.suggest_for_run(run_id)
        assert hit["layer"] == "cache" and hit["pattern_id"] == first["pattern_id"]
        _apply_and_fail_again(ctx, run_id, hit["id"], message)
        again = recovery.suggest_for_run(run_id)  # the same run failed again: its applied suggestion settles first
        assert recovery.list_for_run(ctx, run_id)[-1]["status"] == "failed"
    # two uses, no success: under the floor, so the cache and similarity no longer answer; the LLM is asked anew
    assert again["layer"] == "llm" and again["metadata"]["escalated_pattern"] == first["pattern_id"]
    pattern = next(p for p in recovery.list_patterns(ctx) if p["id"] == first["pattern_id"])
    assert (pattern["success_count"], pattern["failure_count"], pattern["escalated"]) == (0, 0, False)


def test_not_helpful_counts_once_as_a_failed_use(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_CONNECT_ERROR", f"{word()} connection refused")
    sug = recovery.suggest_for_run(run_id)
    got = recovery.feedback(ctx, run_id, sug["id"], helpful=False, note="mail me at bob@example.com")
    assert got["helpful"] is False
    recovery.feedback(ctx, run_id, sug["id"], helpful=False)
    pattern = next(p for p in recovery.list_patterns(ctx) if p["id"] == sug["pattern_id"])
    assert pattern["failure_count"] == 1
    with session_scope() as s:
        note = s.execute(text("SELECT feedback_note FROM recovery_suggestions WHERE id = :i"), {"i": sug["id"]}).scalar()
    assert note is None or "bob@example.com" not in note


def test_apply_refuses_what_it_cannot_do(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_NOT_FOUND", f"GET https://example.com/{word()} returned 404")
    sug = recovery.suggest_for_run(run_id)
    assert sug["mode"] == "ABORT"
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    assert err.value.code == "SUGGESTION_NOT_APPLICABLE"
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(ctx, run_id, uuid.uuid4(), None)
    assert err.value.code == "SUGGESTION_NOT_FOUND"
    with pytest.raises(AosError) as err:
        recovery.feedback(ctx, run_id, "not-a-uuid", helpful=True)
    assert err.value.code == "SUGGESTION_NOT_FOUND"


def test_another_tenants_suggestion_is_not_found(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    sug = recovery.suggest_for_run(run_id)
    with session_scope() as s:
        other = create_tenant(s, f"o-{word()}").id
    octx = TenantContext(tenant_id=other, tenant_name="o", key_id=None, scopes=frozenset({"admin"}))
    with pytest.raises(AosError) as err:
        recovery.apply_suggestion(octx, run_id, sug["id"], None)
    assert err.value.code == "NOT_FOUND"
    with pytest.raises(AosError) as err:
        recovery.list_for_run(octx, run_id)
    assert err.value.code == "NOT_FOUND"


def test_applying_twice_applies_once(tenant):
    ctx, _ = tenant
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    sug = recovery.suggest_for_run(run_id)
    one = recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    two = recovery.apply_suggestion(ctx, run_id, sug["id"], None)
    assert one["status"] == two["status"] == "applied" and one["applied_at"] == two["applied_at"]


def test_auto_apply_resumes_the_run_for_a_safe_suggestion(tenant):
    ctx, _ = tenant
    recovery.update_settings(ctx, auto_apply=True)
    run_id = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out")
    got = recovery.suggest_for_run(run_id)
    assert got["status"] == "applied" and got["applied_by"] == "auto"
    with session_scope() as s:
        assert s.execute(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id}).scalar() == "queued"
    manual = failed_run(ctx, "HTTP_NOT_FOUND", f"{word()} returned 404")
    assert recovery.suggest_for_run(manual)["status"] == "offered"  # ABORT is never applied by itself
