"""The three layers in one process against the real Postgres and Redis: cache, similarity, LLM (offline)."""

from __future__ import annotations

from aos.config import get_settings
from aos.db.session import session_scope
from aos.services import recovery
from aos.services.recovery import quota
from aos.services.tenancy import TenantContext, create_tenant
from tests.services.recovery.helpers import failed_run, word


def test_first_failure_is_written_then_the_same_signature_is_a_cache_hit(tenant):
    ctx, _ = tenant
    w = word()
    first = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"GET https://api.example.com/u/17 {w} "
                                                "timed out after 30s"))
    assert first["layer"] == "llm" and first["metadata"]["provider"] == "offline"
    assert first["mode"] == "RETRY" and first["parameters"] == {"delay_s": 5} and first["pattern_id"]
    again = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"GET https://api.example.com/u/9912 {w} "
                                                "timed out after 12s"))
    assert again["layer"] == "cache" and again["pattern_id"] == first["pattern_id"]
    assert again["metadata"]["from"] == "redis"


def test_a_reworded_failure_is_answered_by_a_similar_pattern(tenant):
    ctx, _ = tenant
    w = word()
    first = recovery.suggest_for_run(failed_run(
        ctx, "HTTP_TIMEOUT", f"connection timed out while reading from upstream {w} after 30s"))
    near = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"read from upstream {w} timed out after 45s"))
    assert near["layer"] == "vector" and near["pattern_id"] == first["pattern_id"]
    assert near["similarity"] >= 0.90
    far = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"TLS handshake {word()} aborted by peer"))
    assert far["layer"] == "llm" and far["pattern_id"] != first["pattern_id"]


def test_a_redelivered_suggest_makes_no_second_suggestion(tenant):
    ctx, _ = tenant
    rid = failed_run(ctx, "HTTP_SERVER_ERROR", f"upstream {word()} answered 503")
    one = recovery.suggest_for_run(rid)
    two = recovery.suggest_for_run(rid)
    assert one["id"] == two["id"] and len(recovery.list_for_run(ctx, rid)) == 1


def test_a_spent_quota_degrades_to_the_catalog_and_says_so(tenant):
    ctx, _ = tenant
    recovery.update_settings(ctx, embedding_quota=0, llm_quota=0)
    got = recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out"))
    assert got["layer"] == "catalog" and got["metadata"]["code"] == "QUOTA_EXCEEDED"
    assert set(got["metadata"]["quota_exceeded"]) == {"embedding", "llm"}
    status = recovery.quota_status(ctx)["quotas"]
    assert status["llm"]["code"] == "QUOTA_EXCEEDED" and status["llm"]["refused"] == 1
    assert status["embedding"]["refused"] == 1


def test_the_llm_quota_counts_calls_per_day(tenant):
    ctx, _ = tenant
    recovery.update_settings(ctx, llm_quota=1)
    assert recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out"))["layer"] == "llm"
    second = recovery.suggest_for_run(failed_run(ctx, "HTTP_CONNECTION_ERROR", f"{word()} refused"))
    assert second["layer"] == "catalog" and second["metadata"]["quota_exceeded"] == ["llm"]
    assert recovery.quota_status(ctx)["quotas"]["llm"]["calls"] == 1


def test_patterns_are_kept_per_tenant(tenant):
    ctx, _ = tenant
    w = word()
    recovery.suggest_for_run(failed_run(ctx, "HTTP_TIMEOUT", f"{w} read timed out on upstream"))
    with session_scope() as s:
        other = create_tenant(s, f"other-{w}")
        other_id = other.id
    octx = TenantContext(tenant_id=other_id, tenant_name="o", key_id=None, scopes=frozenset({"admin"}))
    got = recovery.suggest_for_run(failed_run(octx, "HTTP_TIMEOUT", f"{w} read timed out on upstream"))
    # the offline provider's suggestion is shared deployment-wide, but never another tenant's pattern
    assert got["layer"] == "cache" and got["pattern_id"] is None and got["metadata"]["from"] == "deployment"
    assert recovery.list_patterns(octx) == []


def test_quota_take_refuses_beyond_the_limit(tenant):
    ctx, _ = tenant
    recovery.update_settings(ctx, embedding_quota=2)
    with session_scope() as s:
        took = [quota.take(s, get_settings(), ctx.tenant_id, "embedding") for _ in range(3)]
    assert took == [True, True, False]
