"""Rate limits per caller and per tenant (token buckets in the session's real Redis), the daily request and
run quotas, the quotas API, and the SDK's 429 handling against a real server."""

from __future__ import annotations

import time

import pytest

from aos.sdk import Client, RetryPolicy
from aos.sdk.errors import RateLimited
from aos.web.app import create_app
from tests.web.api_helpers import auth, live_server, new_caller, new_tenant, one_step_plan


@pytest.fixture(scope="module")
def operator(aos_env):
    """An operator's key (the `operator` scope sets any tenant's limits)."""
    return new_tenant(("runs:read", "operator"))[1]


def set_limits(client, operator, tenant_name: str, **limits) -> dict:
    r = client.put("/api/v1/quotas", json={"tenant": tenant_name, **limits}, headers=auth(operator))
    assert r.status_code == 200, r.json
    return r.json


def test_a_key_past_its_rate_gets_429_problem_with_retry_after_and_ratelimit_headers(client, operator):
    ctx, key = new_tenant()
    set_limits(client, operator, ctx.tenant_name, key_requests_per_minute=5)
    _, other_key = new_tenant()  # another tenant is not touched
    with_same_tenant = _second_key(ctx)
    for _ in range(5):
        r = client.get("/api/v1/runs", headers=auth(key))
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == "5;w=60"
    r = client.get("/api/v1/runs", headers=auth(key))
    assert r.status_code == 429 and r.content_type == "application/problem+json"
    assert r.json["code"] == "RATE_LIMITED" and r.json["details"]["scope"] == "key"
    assert 1 <= int(r.headers["Retry-After"]) <= 12  # one unit comes back every 12 s at 5 a minute
    assert r.headers["RateLimit-Limit"] == "5" and r.headers["RateLimit-Remaining"] == "0"
    assert r.headers["RateLimit-Reset"] == r.headers["Retry-After"]
    # per key: the tenant's other key, and another tenant, still get through
    assert client.get("/api/v1/runs", headers=auth(with_same_tenant)).status_code == 200
    assert client.get("/api/v1/runs", headers=auth(other_key)).status_code == 200
    # public endpoints are never limited
    assert all(client.get("/api/v1/errors").status_code == 200 for _ in range(10))


def _second_key(ctx) -> str:
    from aos.db.models import Tenant
    from aos.db.session import session_scope
    from aos.services.tenancy import create_api_key

    with session_scope() as s:
        return create_api_key(s, s.get(Tenant, ctx.tenant_id), "second", ("runs:read", "runs:write"))[0]


def test_the_tenant_bucket_is_shared_by_its_keys_and_its_tokens(client, operator, settings_env):
    ctx, key = new_caller("key", settings_env)
    set_limits(client, operator, ctx.tenant_name, tenant_requests_per_minute=4)
    from tests.support.jwt_issuer import claims, sign_hs

    _, _ = new_caller("jwt", settings_env)  # sets the JWT settings
    token = sign_hs(claims(ctx.tenant_name, sub="svc-1"))
    assert [client.get("/api/v1/runs", headers=auth(c)).status_code for c in (key, token, key, token)] == [200] * 4
    r = client.get("/api/v1/runs", headers=auth(_second_key(ctx)))
    assert r.status_code == 429 and r.json["details"]["scope"] == "tenant"


def test_a_jwt_subject_has_its_own_key_bucket(client, operator, settings_env):
    ctx, token = new_caller("jwt", settings_env)
    set_limits(client, operator, ctx.tenant_name, key_requests_per_minute=2)
    from tests.support.jwt_issuer import claims, sign_hs

    other_sub = sign_hs(claims(ctx.tenant_name, sub="someone-else"))
    assert [client.get("/api/v1/runs", headers=auth(token)).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/v1/runs", headers=auth(other_sub)).status_code == 200


def test_expensive_operations_cost_more_and_a_refusal_costs_nothing(client, operator):
    ctx, key = new_tenant()
    set_limits(client, operator, ctx.tenant_name, key_requests_per_minute=12)
    body = {"plan": one_step_plan()}
    assert client.post("/api/v1/simulate", json=body, headers=auth(key)).status_code == 200  # 10 units
    r = client.post("/api/v1/simulate", json=body, headers=auth(key))  # 10 more: 2 left
    assert r.status_code == 429 and r.json["details"]["cost"] == 10
    assert int(r.headers["Retry-After"]) >= 30  # 8 units at 12 a minute
    # the refused simulation spent nothing: two cheap requests still fit
    assert [client.get("/api/v1/runs", headers=auth(key)).status_code for _ in range(3)] == [200, 200, 429]


def test_daily_request_quota_is_quota_exceeded_with_its_name_and_reset(client, operator):
    ctx, key = new_tenant()
    set_limits(client, operator, ctx.tenant_name, daily_requests=3)
    assert [client.get("/api/v1/runs", headers=auth(key)).status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/v1/runs", headers=auth(key))
    assert r.status_code == 429 and r.json["code"] == "QUOTA_EXCEEDED"
    assert r.json["details"]["quota"] == "daily_requests"
    assert r.json["details"]["resets_at"].endswith("T00:00:00+00:00")
    assert int(r.headers["Retry-After"]) <= 86400 and r.headers["RateLimit-Limit"] == "3"
    # the operator sees the usage; raising the quota lets the tenant in again
    view = client.get(f"/api/v1/quotas?tenant={ctx.tenant_name}", headers=auth(operator)).json
    assert view["usage"]["requests"] == 3 and view["limits"]["daily_requests"] == 3  # the refused one is not counted
    set_limits(client, operator, ctx.tenant_name, daily_requests=None)
    assert client.get("/api/v1/runs", headers=auth(key)).status_code == 200


def test_daily_runs_quota_refuses_the_next_submission(client, operator, worker):
    ctx, key = new_tenant()
    set_limits(client, operator, ctx.tenant_name, daily_runs=1)
    assert client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(key)).status_code == 201
    r = client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(key))
    assert r.status_code == 429 and r.json["code"] == "QUOTA_EXCEEDED"
    assert r.json["details"]["quota"] == "daily_runs" and "Retry-After" in r.headers
    view = client.get("/api/v1/quotas", headers=auth(key)).json
    assert view["usage"]["runs"] == 1 and view["limits"]["daily_runs"] == 1


def test_quotas_show_limits_and_usage_and_only_operators_change_them(client, operator, aos_env):
    ctx, key = new_tenant()  # runs:read, runs:write, admin
    view = client.get("/api/v1/quotas", headers=auth(key))
    assert view.status_code == 200
    body = view.json
    assert body["tenant"]["name"] == ctx.tenant_name
    assert body["limits"]["key_requests_per_minute"] == 1_000_000  # the deployment's default (tests/conftest.py)
    assert body["own"]["key_requests_per_minute"] is None
    assert body["usage"]["requests"] >= 1 and body["usage"]["cost_usd"] == 0
    # a tenant's admin cannot raise its own limits, nor look at another tenant's
    r = client.put("/api/v1/quotas", json={"daily_runs": 10**6}, headers=auth(key))
    assert r.status_code == 403 and r.json["code"] == "FORBIDDEN_SCOPE"
    other, _ = new_tenant()
    r = client.get(f"/api/v1/quotas?tenant={other.tenant_name}", headers=auth(key))
    assert r.status_code == 403
    after = set_limits(client, operator, ctx.tenant_name, daily_budget_usd=2.5, daily_tokens=1000,
                       key_requests_per_minute=100)
    assert after["limits"]["daily_budget_usd"] == 2.5 and after["limits"]["daily_tokens"] == 1000
    assert after["own"]["key_requests_per_minute"] == 100
    r = client.put("/api/v1/quotas", json={"tenant": "no-such-tenant", "daily_runs": 1}, headers=auth(operator))
    assert r.status_code == 404
    r = client.put("/api/v1/quotas", json={"key_requests_per_minute": 0}, headers=auth(operator))
    assert r.status_code == 422


def test_sdk_waits_out_a_429_and_retries(client, operator, settings_env):
    settings_env(AOS_RATE_LIMIT_BURST_S="1")
    ctx, key = new_tenant()
    set_limits(client, operator, ctx.tenant_name, key_requests_per_minute=60)  # a bucket of 1, one a second
    with live_server(create_app()) as url:
        with Client(url, api_key=key, retry=RetryPolicy(max_attempts=4, max_retry_after_s=5)) as sdk:
            sdk.runs.page(limit=1)
            started = time.monotonic()
            sdk.runs.page(limit=1)  # refused once, waited for Retry-After, then answered
            assert time.monotonic() - started >= 0.9
        with Client(url, api_key=key, retry=RetryPolicy(max_attempts=1)) as sdk:
            try:  # this window's unit: used here, or already (a refused request counts too)
                sdk.runs.page(limit=1)
            except RateLimited:
                pass
            with pytest.raises(RateLimited) as caught:
                sdk.runs.page(limit=1)
    assert caught.value.code == "RATE_LIMITED" and caught.value.status == 429
    assert caught.value.retry_after == 1


def test_an_unreachable_limiter_store_lets_requests_through(settings_env, aos_env, caplog, monkeypatch):
    import socket

    from aos.web import ratelimit

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    settings_env(AOS_RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{dead}/0")
    monkeypatch.setattr(ratelimit, "_last_warning", 0.0)  # the warning is said once a minute per process
    _, key = new_tenant()
    client = create_app().test_client()
    assert [client.get("/api/v1/runs", headers=auth(key)).status_code for _ in range(3)] == [200] * 3
    assert any("rate limits are not enforced" in r.getMessage() for r in caplog.records)
