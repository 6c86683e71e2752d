"""The dead-letters and webhook API (admin scope) over the Flask app, with a real worker and receivers."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from aos.db.models import DeadLetter, OutboxMessage
from aos.db.session import session_scope
from aos.services.outbox import drain_outbox
from aos.services.tenancy import authenticate, create_api_key, create_tenant
from aos.services.webhooks import verify_signature
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PROBLEM = "application/problem+json"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _tenant(scopes=("runs:read", "runs:write", "admin")):
    with session_scope() as s:
        t = create_tenant(s, f"t-{uuid.uuid4().hex[:10]}")
        key, _ = create_api_key(s, t, "test", scopes)
        return authenticate(s, key), key


def _insert(ctx, **kw) -> int:
    values = {"tenant_id": ctx.tenant_id, "kind": "outbox", "payload": {"outbox_id": 0},
              "error_code": "HTTP_SERVER_ERROR", "error_message": "boom", "attempts": 3, **kw}
    with session_scope() as s:
        dl = DeadLetter(**values)
        s.add(dl)
        s.flush()
        return dl.id


def _problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["code"] == code, body
    return body


# --- access -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/dead-letters"), ("get", "/api/v1/dead-letters/1"), ("post", "/api/v1/dead-letters/1/replay"),
    ("post", "/api/v1/dead-letters/1/discard"), ("get", "/api/v1/webhook"), ("put", "/api/v1/webhook"),
    ("post", "/api/v1/webhook/rotate-secret"),
])
def test_every_endpoint_needs_a_key_with_the_admin_scope(client, aos_env, method, path):
    _, key = _tenant(("runs:read", "runs:write"))
    kwargs = {"json": {"url": None}} if method == "put" else {}
    _problem(getattr(client, method)(path, headers=_auth(key), **kwargs), 403, "FORBIDDEN_SCOPE")
    _problem(getattr(client, method)(path, **kwargs), 401, "AUTH_MISSING")


# --- dead letters ---------------------------------------------------------------------------------------------------


def test_list_pages_newest_first_with_a_cursor_that_is_stable_under_inserts(client, aos_env):
    ctx, key = _tenant()
    ids = [_insert(ctx) for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/api/v1/dead-letters", query_string=query, headers=_auth(key))
        assert resp.status_code == 200, resp.get_json()
        page = resp.get_json()
        pages += 1
        seen += [d["id"] for d in page["items"]]
        if pages == 1:
            _insert(ctx)  # a new one while paging: newer than the cursor, so never in a later page
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True) and pages == 3


def test_list_filters_by_status_and_kind_and_refuses_bad_input(client, aos_env):
    ctx, key = _tenant()
    step = _insert(ctx, kind="step", run_id=uuid.uuid4(), step_id="s", payload={"step_index": 0})
    discarded = _insert(ctx, status="discarded")
    opened = _insert(ctx)

    def ids(**q):
        resp = client.get("/api/v1/dead-letters", query_string=q, headers=_auth(key))
        assert resp.status_code == 200
        return [d["id"] for d in resp.get_json()["items"]]

    assert ids(kind="step") == [step]
    assert ids(status="discarded") == [discarded]
    assert ids(status="open", kind="outbox") == [opened]
    _problem(client.get("/api/v1/dead-letters?cursor=not-a-cursor", headers=_auth(key)), 400, "CURSOR_INVALID")
    _problem(client.get("/api/v1/dead-letters?limit=0", headers=_auth(key)), 422, "VALIDATION_ERROR")
    _problem(client.get("/api/v1/dead-letters?status=lost", headers=_auth(key)), 422, "VALIDATION_ERROR")


def test_get_shows_one_and_another_tenants_is_a_404(client, aos_env):
    ctx, key = _tenant()
    other_ctx, other_key = _tenant()
    dl_id = _insert(ctx)
    resp = client.get(f"/api/v1/dead-letters/{dl_id}", headers=_auth(key))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == dl_id and body["kind"] == "outbox" and body["status"] == "open"
    assert body["error"] == {"code": "HTTP_SERVER_ERROR", "message": "boom", "category": "transient",
                             "retryable": True}
    assert body["replay"] is None and body["attempts"] == 3
    for path in (f"/api/v1/dead-letters/{dl_id}", f"/api/v1/dead-letters/{dl_id}/replay",
                 f"/api/v1/dead-letters/{dl_id}/discard"):
        call = client.get if path.endswith(str(dl_id)) else client.post
        _problem(call(path, headers=_auth(other_key)), 404, "DEAD_LETTER_NOT_FOUND")
    _problem(client.get("/api/v1/dead-letters/99999999999999", headers=_auth(key)), 404, "DEAD_LETTER_NOT_FOUND")
    _problem(client.get("/api/v1/dead-letters/abc", headers=_auth(key)), 404, "NOT_FOUND")
    assert client.get(f"/api/v1/dead-letters/{dl_id}", headers=_auth(key)).get_json()["status"] == "open"


def test_replay_resumes_a_failed_run_once_and_discard_closes_a_dead_letter(client, worker, aos_env):
    ctx, key = _tenant()
    state = {"up": False}
    with serve_http({"/dep": lambda r: Reply(200, json={"v": 1}) if state["up"] else Reply(502)}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/dep")},
                           "retry": {"max_attempts": 2, "backoff_s": 0.05}}]}
        run = client.post("/api/v1/runs", json={"plan": plan}, headers=_auth(key)).get_json()
        assert wait_for_run(run["id"]).status == "dead_lettered"
        page = client.get("/api/v1/dead-letters?kind=step", headers=_auth(key)).get_json()
        (dl,) = page["items"]
        assert dl["run_id"] == run["id"] and dl["step_id"] == "fetch" and dl["error"]["code"] == "HTTP_BAD_GATEWAY"
        state["up"] = True
        first = client.post(f"/api/v1/dead-letters/{dl['id']}/replay", headers=_auth(key))
        second = client.post(f"/api/v1/dead-letters/{dl['id']}/replay", headers=_auth(key))
        assert first.status_code == second.status_code == 200
        assert (first.get_json()["replayed_now"], second.get_json()["replayed_now"]) == (True, False)
        assert first.get_json()["result"] == second.get_json()["result"] == "requeued"
        assert wait_for_run(run["id"], statuses=("succeeded",)).status == "succeeded"
        assert len(srv.requests) == 3
    other = _insert(ctx)
    closed = client.post(f"/api/v1/dead-letters/{other}/discard", headers=_auth(key))
    assert closed.status_code == 200 and closed.get_json()["status"] == "discarded"
    _problem(client.post(f"/api/v1/dead-letters/{other}/replay", headers=_auth(key)), 409,
             "DEAD_LETTER_NOT_REPLAYABLE")
    _problem(client.post(f"/api/v1/dead-letters/{dl['id']}/discard", headers=_auth(key)), 409, "CONFLICT")


# --- the webhook endpoint ----------------------------------------------------------------------------------------------


def test_webhook_put_shows_the_secret_once_get_never_and_rotation_replaces_it(client, aos_env):
    _, key = _tenant()
    empty = client.get("/api/v1/webhook", headers=_auth(key)).get_json()
    assert empty == {"url": None, "secret_set": False, "events": ["run.succeeded", "run.failed", "budget.warning", "run.waiting", "run.recovery"]}
    put = client.put("/api/v1/webhook", json={"url": "http://127.0.0.1:9/hooks"}, headers=_auth(key))
    assert put.status_code == 200
    secret = put.get_json()["secret"]
    assert secret.startswith("whsec_") and put.get_json()["url"] == "http://127.0.0.1:9/hooks"
    assert "secret" not in client.get("/api/v1/webhook", headers=_auth(key)).get_json()
    again = client.put("/api/v1/webhook", json={"url": "http://127.0.0.1:9/v2"}, headers=_auth(key)).get_json()
    assert "secret" not in again and again["secret_set"]
    rotated = client.post("/api/v1/webhook/rotate-secret", headers=_auth(key)).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    off = client.put("/api/v1/webhook", json={"url": None}, headers=_auth(key)).get_json()
    assert off["url"] is None and off["secret_set"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"url": "ftp://127.0.0.1/x"}, 422, "VALIDATION_ERROR"),
    ({"url": "not a url"}, 422, "VALIDATION_ERROR"),
    ({"url": ""}, 422, "VALIDATION_ERROR"),
    ({}, 422, "VALIDATION_ERROR"),
    ({"url": "http://127.0.0.1/x", "extra": 1}, 422, "VALIDATION_ERROR"),
    ({"url": "http://10.0.0.7/hooks"}, 403, "HTTP_SSRF_BLOCKED"),
    ({"url": "http://[::ffff:169.254.169.254]/"}, 403, "HTTP_SSRF_BLOCKED"),
])
def test_webhook_put_refuses_bad_and_private_urls(client, aos_env, body, status, code):
    _, key = _tenant()
    _problem(client.put("/api/v1/webhook", json=body, headers=_auth(key)), status, code)
    assert client.get("/api/v1/webhook", headers=_auth(key)).get_json()["url"] is None


def test_a_run_submitted_over_the_api_is_announced_to_the_endpoint_set_over_the_api(client, worker, aos_env):
    _, key = _tenant()
    with serve_http({"POST /hooks": Reply(200)}) as srv:
        secret = client.put("/api/v1/webhook", json={"url": srv.url("/hooks")}, headers=_auth(key)).get_json()["secret"]
        plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
        run = client.post("/api/v1/runs", json={"plan": plan}, headers=_auth(key)).get_json()
        assert wait_for_run(run["id"]).status == "succeeded"
        with session_scope() as s:
            row_id = s.scalar(select(OutboxMessage.id).where(OutboxMessage.topic == "run.succeeded",
                                                             OutboxMessage.payload["run_id"].astext == run["id"]))
        deadline = time.monotonic() + 20
        while not any(r.headers.get("aos-webhook-id") == str(row_id) for r in srv.requests):
            assert time.monotonic() < deadline
            drain_outbox(CeleryPublisher())
            time.sleep(0.05)
        (req,) = [r for r in srv.requests if r.headers.get("aos-webhook-id") == str(row_id)]
    assert verify_signature(secret, req.headers["aos-signature"], req.body)
    assert req.json()["data"]["run_id"] == run["id"]
