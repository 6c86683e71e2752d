"""The recovery endpoints: suggestions of a failed run, feedback, apply, patterns, quota and settings."""

from __future__ import annotations

import uuid

from aos.db.session import session_scope
from aos.services import recovery
from aos.services.tenancy import create_api_key, create_tenant
from tests.services.recovery.helpers import failed_run, word


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _failed_with_suggestion(ctx, code="HTTP_TIMEOUT", message=None):
    run_id = failed_run(ctx, code, message or f"GET https://api.example.com {word()} timed out")
    return run_id, recovery.suggest_for_run(run_id)


def test_a_failed_runs_suggestions_are_listed(client, tenant):
    ctx, key = tenant
    run_id, sug = _failed_with_suggestion(ctx)
    r = client.get(f"/api/v1/runs/{run_id}/recovery", headers=_auth(key))
    assert r.status_code == 200
    (item,) = r.json["items"]
    assert item["id"] == sug["id"] and item["layer"] == "llm" and item["mode"] == "RETRY"
    assert item["apply_command"] == f"aos runs recover {run_id} --apply --suggestion {sug['id']}"


def test_feedback_and_apply(client, tenant):
    ctx, key = tenant
    run_id, sug = _failed_with_suggestion(ctx)
    r = client.post(f"/api/v1/runs/{run_id}/recovery/{sug['id']}/feedback", json={"helpful": True},
                    headers=_auth(key))
    assert r.status_code == 200 and r.json["helpful"] is True
    r = client.post(f"/api/v1/runs/{run_id}/recovery/{sug['id']}/apply", headers=_auth(key))
    assert r.status_code == 200 and r.json["status"] == "applied"
    assert client.get(f"/api/v1/runs/{run_id}", headers=_auth(key)).json["status"] in ("queued", "running",
                                                                                       "succeeded", "failed")


def test_bad_input_gets_a_code(client, tenant):
    ctx, key = tenant
    run_id, sug = _failed_with_suggestion(ctx)
    base = f"/api/v1/runs/{run_id}/recovery"
    r = client.post(f"{base}/{uuid.uuid4()}/feedback", json={"helpful": True}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (404, "SUGGESTION_NOT_FOUND")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post(f"{base}/{sug['id']}/feedback", json={"helpful": "very"}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")
    r = client.post(f"{base}/{sug['id']}/feedback", json={"helpful": True, "stars": 5}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")
    r = client.get(f"/api/v1/runs/{uuid.uuid4()}/recovery", headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (404, "NOT_FOUND")
    abort_run, abort = _failed_with_suggestion(ctx, "HTTP_NOT_FOUND", f"GET {word()} returned 404")
    r = client.post(f"/api/v1/runs/{abort_run}/recovery/{abort['id']}/apply", headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (409, "SUGGESTION_NOT_APPLICABLE")


def test_another_tenants_suggestion_is_not_found(client, tenant):
    ctx, _ = tenant
    run_id, sug = _failed_with_suggestion(ctx)
    with session_scope() as s:
        other = create_tenant(s, f"other-{word()}")
        other_key, _ = create_api_key(s, other, "k", ("runs:read", "runs:write"))
    r = client.post(f"/api/v1/runs/{run_id}/recovery/{sug['id']}/apply", headers=_auth(other_key))
    assert (r.status_code, r.json["code"]) == (404, "NOT_FOUND")
    r = client.get(f"/api/v1/runs/{run_id}/recovery", headers=_auth(other_key))
    assert r.status_code == 404


def test_patterns_quota_and_settings(client, tenant):
    ctx, key = tenant
    _, sug = _failed_with_suggestion(ctx)
    r = client.get("/api/v1/recovery/patterns", headers=_auth(key))
    assert r.status_code == 200 and [p["id"] for p in r.json["items"]] == [sug["pattern_id"]]
    r = client.put("/api/v1/recovery/settings", json={"auto_apply": True, "llm_quota": 0}, headers=_auth(key))
    assert r.status_code == 200 and r.json == {"auto_apply": True, "embedding_quota": None, "llm_quota": 0}
    _, spent = _failed_with_suggestion(ctx, "HTTP_CONNECT_ERROR", f"{word()} refused")
    assert spent["layer"] == "catalog" and spent["metadata"]["code"] == "QUOTA_EXCEEDED"
    quota = client.get("/api/v1/recovery/quota", headers=_auth(key)).json["quotas"]
    assert quota["llm"]["code"] == "QUOTA_EXCEEDED" and quota["llm"]["refused"] == 1
    r = client.put("/api/v1/recovery/settings", json={"llm_quota": None}, headers=_auth(key))
    assert r.json["llm_quota"] is None and r.json["auto_apply"] is True
    r = client.put("/api/v1/recovery/settings", json={"llm_quota": -1}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")


def test_settings_need_the_admin_scope(client, tenant):
    with session_scope() as s:
        t = create_tenant(s, f"plain-{word()}")
        key, _ = create_api_key(s, t, "k", ("runs:read", "runs:write"))
    r = client.put("/api/v1/recovery/settings", json={"auto_apply": True}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (403, "FORBIDDEN_SCOPE")
    assert client.get("/api/v1/recovery/quota", headers=_auth(key)).status_code == 200
