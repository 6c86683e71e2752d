"""The golden API: record a run as a signed document, verify it, replay it; a bad signature is a 422 with its
code; another tenant's run is a 404."""

from __future__ import annotations

import copy
import json
import time
import uuid

import pytest

from aos.golden.record import seal
from aos.golden.verify import encode, parse
from aos.services import golden
from aos.services.runs import submit_run
from tests.golden.helpers import SECRET, mixed_plan, run_plan, running_stubs
from tests.web.api_helpers import auth, new_caller, new_tenant

TRANSFORM = {"name": "api-golden", "inputs": {"n": 3},
             "steps": [{"id": "a", "skill": "json.transform", "args": {"input": {"$ref": "inputs.n"}, "expr": "@"}},
                       {"id": "b", "skill": "json.transform",
                        "args": {"input": {"x": {"$ref": "steps.a.output"}}, "expr": "x"}}]}


@pytest.fixture
def golden_key(settings_env):
    return settings_env(AOS_GOLDEN_SECRET=SECRET, AOS_GOLDEN_KEY_ID="test-k1")


@pytest.fixture
def stubs():
    with running_stubs() as running:
        yield running


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_record_returns_a_signed_document_that_verifies_and_replays_identically(client, tenant, worker, golden_key,
                                                                                stubs):
    ctx, key = tenant
    run_id = run_plan(ctx, mixed_plan(stubs["http"].base_url, stubs["llm"].openai_url))
    resp = client.post(f"/api/v1/runs/{run_id}/golden", headers=_auth(key))
    assert resp.status_code == 200, resp.json
    doc = resp.json
    assert set(doc) == {"format", "key_id", "hash", "signature", "body"} and doc["key_id"] == "tenant:test-k1"
    data = encode(doc)  # what `aos golden record` writes: the document survives the JSON round trip
    golden.verify(ctx, parse(data), data)

    resp = client.post("/api/v1/golden/verify", json={"document": doc}, headers=_auth(key))
    assert resp.status_code == 200 and resp.json["valid"] and resp.json["steps"] == 8

    stubs["stop"]()
    resp = client.post("/api/v1/golden/replay", json={"document": doc, "timeout_s": 60}, headers=_auth(key))
    assert resp.status_code == 200, resp.json
    report = resp.json
    assert report["identical"] is True and report["divergence"] is None and report["status"] == "succeeded"
    assert [s["identical"] for s in report["steps"]] == [True] * 8
    assert report["source_run_id"] == run_id and report["run_id"] != run_id


def test_a_divergence_is_a_200_report_naming_the_step_path_and_values(client, tenant, worker, golden_key):
    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    plan = copy.deepcopy(TRANSFORM)
    plan["steps"][1]["args"]["expr"] = "to_string(x)"
    resp = client.post("/api/v1/golden/replay", json={"document": doc, "plan": plan, "timeout_s": 60},
                       headers=_auth(key))
    assert resp.status_code == 200, resp.json
    assert resp.json["identical"] is False
    assert resp.json["divergence"] == {"step_index": 1, "step_id": "b", "path": "args.expr",
                                       "recorded": "x", "replayed": "to_string(x)"}


def test_a_bad_signature_is_a_422_with_its_code_and_no_run_starts(client, tenant, worker, golden_key):
    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    doc["body"]["steps"][0]["outcome"]["output"] = 4
    for path in ("/api/v1/golden/replay", "/api/v1/golden/verify"):
        resp = client.post(path, json={"document": doc}, headers=_auth(key))
        assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
        assert resp.json["code"] == "GOLDEN_SIGNATURE_INVALID" and "steps[0] ('a')" in resp.json["detail"]


def test_unknown_key_and_bad_format_have_their_own_codes(client, tenant, worker, golden_key):
    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    resp = client.post("/api/v1/golden/verify", json={"document": {**doc, "key_id": "k9"}}, headers=_auth(key))
    assert resp.status_code == 422 and resp.json["code"] == "GOLDEN_KEY_UNKNOWN"
    bad = {k: v for k, v in doc.items() if k != "signature"}
    resp = client.post("/api/v1/golden/replay", json={"document": bad}, headers=_auth(key))
    assert resp.status_code == 422 and resp.json["code"] == "GOLDEN_FORMAT_INVALID"
    assert "$.signature" in resp.json["detail"]
    resp = client.post("/api/v1/golden/replay", json={}, headers=_auth(key))
    assert resp.status_code == 422 and resp.json["code"] == "VALIDATION_ERROR"


def test_another_tenants_run_is_404_and_an_unfinished_run_is_409(client, tenant, worker, golden_key, aos_env):
    from aos.db.session import session_scope
    from aos.services.tenancy import create_api_key, create_tenant

    ctx, key = tenant
    run_id = run_plan(ctx, TRANSFORM)
    with session_scope() as s:
        other = create_tenant(s, f"other-{uuid.uuid4().hex[:8]}")
        other_key, _ = create_api_key(s, other, "k", ("runs:read", "runs:write"))
    assert client.post(f"/api/v1/runs/{run_id}/golden", headers=_auth(other_key)).json["code"] == "NOT_FOUND"
    queued = submit_run(ctx, TRANSFORM, None)
    resp = client.post(f"/api/v1/runs/{queued}/golden", headers=_auth(key))
    assert resp.status_code == 409 and resp.json["code"] == "CONFLICT"
    assert client.post(f"/api/v1/runs/{run_id}/golden").status_code == 401


def test_a_document_signed_with_another_secret_does_not_replay(client, tenant, worker, golden_key):
    from aos.golden.sign import KeyRing

    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    forged = seal(doc["body"], KeyRing("test-k1", {"test-k1": "not-the-server-secret"}).for_tenant(str(ctx.tenant_id)))
    resp = client.post("/api/v1/golden/replay", json={"document": forged}, headers=_auth(key))
    assert resp.status_code == 422 and resp.json["code"] == "GOLDEN_SIGNATURE_INVALID"


def test_recording_answers_auth_then_the_run_then_what_to_configure(client, tenant, worker, settings_env):
    """The checks in the order a caller can act on them; a missing key is the server's 503, not a 500."""
    ctx, key = tenant
    run_id = run_plan(ctx, TRANSFORM)
    other_ctx, other_key = new_tenant()
    settings_env(AOS_GOLDEN_SECRET="")
    assert client.post(f"/api/v1/runs/{run_id}/golden").json["code"] == "AUTH_MISSING"
    for rid in ("not-a-uuid", str(uuid.uuid4())):
        resp = client.post(f"/api/v1/runs/{rid}/golden", headers=_auth(key))
        assert (resp.status_code, resp.json["code"]) == (404, "NOT_FOUND"), rid
    resp = client.post(f"/api/v1/runs/{run_id}/golden", headers=_auth(other_key))
    assert (resp.status_code, resp.json["code"]) == (404, "NOT_FOUND")
    resp = client.post(f"/api/v1/runs/{run_id}/golden", headers=_auth(key))
    assert (resp.status_code, resp.content_type, resp.json["code"]) == \
        (503, "application/problem+json", "GOLDEN_SECRET_MISSING")
    assert "AOS_GOLDEN_SECRET" in resp.json["detail"]
    resp = client.post("/api/v1/golden/verify", json={"document": {}}, headers=_auth(key))
    assert (resp.status_code, resp.json["code"]) == (422, "GOLDEN_FORMAT_INVALID")  # the document first


def test_a_replay_not_final_in_time_is_202_with_a_report_to_poll(client, tenant, worker, golden_key):
    """The request does not hold its thread for the replay run: past timeout_s it answers 202."""
    from aos.web.slots import LONG_REQUESTS

    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    held = LONG_REQUESTS.active()
    resp = client.post("/api/v1/golden/replay", json={"document": doc, "timeout_s": 0}, headers=_auth(key))
    assert resp.status_code == 202, resp.json
    pending = resp.json
    assert pending["status"] in ("queued", "running") and resp.headers["Location"] == pending["report"]
    assert LONG_REQUESTS.active() == held  # the wait's slot is given back
    report = None
    for _ in range(300):
        r = client.post(pending["report"], json={"document": doc}, headers=_auth(key))
        assert r.status_code in (200, 202), r.json
        if r.status_code == 200:
            report = r.json
            break
        time.sleep(0.2)
    assert report is not None and report["identical"] is True and report["run_id"] == pending["run_id"]
    # the report compares a replay with its own document only; another tenant sees no such run
    other_doc = golden.record_run(ctx, run_plan(ctx, {**TRANSFORM, "name": "another"}))
    r = client.post(pending["report"], json={"document": other_doc}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (409, "CONFLICT")
    _, stranger = new_tenant()
    r = client.post(pending["report"], json={"document": doc}, headers=_auth(stranger))
    assert (r.status_code, r.json["code"]) == (404, "NOT_FOUND")
    r = client.post("/api/v1/golden/replay", json={"document": doc, "timeout_s": 61}, headers=_auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")  # no wait longer than a request may hold


def _run_count(tenant_id) -> int:  # noqa: ANN001
    from sqlalchemy import func, select

    from aos.db.models import Run
    from aos.db.session import session_scope

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Run).where(Run.tenant_id == tenant_id))


@pytest.mark.parametrize("caller", ["key", "jwt"])
def test_another_tenant_can_neither_verify_nor_replay_a_recording(client, tenant, worker, golden_key, settings_env,
                                                                  caller):
    """Files are signed with a key derived for the recording tenant: tenant B (an API key or a JWT caller)
    holding A's file cannot verify it, and its replay — which would run A's plan and inputs in B — never
    starts."""
    ctx_a, key_a = tenant
    doc = golden.record_run(ctx_a, run_plan(ctx_a, TRANSFORM))
    assert doc["key_id"] == "tenant:test-k1"
    ctx_b, cred_b = new_caller(caller, settings_env)
    for path in ("/api/v1/golden/verify", "/api/v1/golden/replay"):
        resp = client.post(path, json={"document": doc}, headers=auth(cred_b))
        assert (resp.status_code, resp.json["code"]) == (422, "GOLDEN_SIGNATURE_INVALID"), path
        assert "another tenant" in resp.json["detail"]
    assert _run_count(ctx_b.tenant_id) == 0
    assert client.post("/api/v1/golden/verify", json={"document": doc}, headers=auth(key_a)).json["valid"]


def test_files_signed_before_a_rotation_still_verify_for_their_tenant_only(client, tenant, worker, golden_key,
                                                                         settings_env):
    ctx_a, key_a = tenant
    old = golden.record_run(ctx_a, run_plan(ctx_a, TRANSFORM))
    _, key_b = new_tenant()
    settings_env(AOS_GOLDEN_SECRET="rotated-secret-0123456789abcdef", AOS_GOLDEN_KEY_ID="test-k2",
                 AOS_GOLDEN_KEYS=json.dumps({"test-k1": SECRET}))
    new = golden.record_run(ctx_a, run_plan(ctx_a, TRANSFORM))
    assert (old["key_id"], new["key_id"]) == ("tenant:test-k1", "tenant:test-k2")
    for doc in (old, new):
        assert client.post("/api/v1/golden/verify", json={"document": doc}, headers=auth(key_a)).json["valid"]
        resp = client.post("/api/v1/golden/verify", json={"document": doc}, headers=auth(key_b))
        assert resp.json["code"] == "GOLDEN_SIGNATURE_INVALID"


def test_a_file_signed_with_the_deployment_key_is_refused_unless_the_operator_accepts_it(
        client, tenant, worker, golden_key, settings_env):
    from aos.golden.sign import KeyRing

    ctx, key = tenant
    doc = golden.record_run(ctx, run_plan(ctx, TRANSFORM))
    legacy = seal(doc["body"], KeyRing("test-k1", {"test-k1": SECRET}))  # as files were signed before
    resp = client.post("/api/v1/golden/verify", json={"document": legacy}, headers=auth(key))
    assert resp.json["code"] == "GOLDEN_KEY_UNKNOWN" and "re-record" in resp.json["detail"]
    settings_env(AOS_GOLDEN_ACCEPT_DEPLOYMENT_KEYS="true")
    assert client.post("/api/v1/golden/verify", json={"document": legacy}, headers=auth(key)).json["valid"]
