"""Signals over HTTP and through the SDK: delivery, idempotency, and bad input answered with problem+json codes."""

from __future__ import annotations

import uuid

import pytest

from aos.sdk import Client, Conflict, NotFound, ValidationFailed
from tests.support.worker import wait_for_run
from tests.web.api_helpers import auth, live_server, new_tenant

ASK = {"steps": [
    {"id": "ask", "skill": "signal.wait",
     "args": {"signal": "answer", "reason": "pick a size", "timeout_s": 3600,
              "schema": {"type": "object", "required": ["size"], "properties": {"size": {"enum": ["S", "M"]}}}}},
    {"id": "echo", "skill": "json.transform", "args": {"input": {"$ref": "steps.ask.output"}, "expr": "size"}}]}


def _waiting(client, key: str) -> str:
    run_id = client.post("/api/v1/runs", json={"plan": ASK}, headers=auth(key)).json["id"]
    wait_for_run(uuid.UUID(run_id), statuses=("waiting", "failed"))
    return run_id


def test_a_waiting_run_says_what_it_waits_for_and_a_signal_finishes_it(client, tenant, worker):
    _, key = tenant
    run_id = _waiting(client, key)
    body = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    assert body["status"] == "waiting" and body["waiting"]["signal"] == "answer"
    assert body["waiting"]["reason"] == "pick a size" and body["waiting"]["deadline"]
    resp = client.post(f"/api/v1/runs/{run_id}/signals/answer", json={"data": {"size": "M"}, "idempotency_key": "a1"},
                       headers=auth(key))
    assert resp.status_code == 200, resp.json
    assert resp.json == {"run_id": run_id, "signal": "answer", "step_id": "ask", "status": "running",
                         "duplicate": False}
    wait_for_run(uuid.UUID(run_id))
    body = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    assert body["status"] == "succeeded" and body["steps"][1]["output"] == "M" and body["waiting"] is None
    again = client.post(f"/api/v1/runs/{run_id}/signals/answer", json={"data": {"size": "M"}, "idempotency_key": "a1"},
                        headers=auth(key))
    assert again.status_code == 200 and again.json["duplicate"] is True
    listed = client.get(f"/api/v1/runs/{run_id}/signals", headers=auth(key)).json["items"]
    assert [(w["status"], w["payload"], w["idempotency_key"]) for w in listed] == [("signalled", {"size": "M"}, "a1")]


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("other", {"data": {"size": "S"}}, 409, "SIGNAL_NOT_AWAITED"),
    ("answer", {"data": {"size": "XL"}}, 422, "SIGNAL_PAYLOAD_INVALID"),
    ("answer", {"size": "S"}, 422, "VALIDATION_ERROR"),          # the payload goes in `data`
    ("answer", {"data": 1, "idempotency_key": ""}, 422, "VALIDATION_ERROR"),
])
def test_bad_signals_get_a_problem_with_a_code_and_change_nothing(client, tenant, worker, name, body, status, code):
    _, key = tenant
    run_id = _waiting(client, key)
    resp = client.post(f"/api/v1/runs/{run_id}/signals/{name}", json=body, headers=auth(key))
    assert resp.status_code == status, resp.json
    assert resp.content_type.startswith("application/problem+json") and resp.json["code"] == code
    after = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    assert after["status"] == "waiting"
    assert [w["status"] for w in client.get(f"/api/v1/runs/{run_id}/signals", headers=auth(key)).json["items"]] \
        == ["waiting"]


def test_a_signal_to_a_run_that_does_not_wait_or_of_another_tenant_is_refused(client, tenant, worker):
    _, key = tenant
    run_id = _waiting(client, key)
    _, other_key = new_tenant()
    resp = client.post(f"/api/v1/runs/{run_id}/signals/answer", json={"data": {"size": "S"}},
                       headers=auth(other_key))
    assert resp.status_code == 404 and resp.json["code"] == "NOT_FOUND"
    client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(key))
    resp = client.post(f"/api/v1/runs/{run_id}/signals/answer", json={"data": {"size": "S"}}, headers=auth(key))
    assert resp.status_code == 409 and resp.json["code"] == "RUN_NOT_WAITING"


def test_the_sdk_reads_the_wait_and_delivers_the_signal(app, tenant, worker):
    _, key = tenant
    with live_server(app) as url, Client(url, api_key=key) as c:
        run = c.runs.create(ASK)
        wait_for_run(uuid.UUID(run.id), statuses=("waiting",))
        run = c.runs.get(run.id)
        assert run.is_waiting and run.waiting.signal == "answer" and run.waiting.deadline is not None
        with pytest.raises(ValidationFailed) as exc:
            run.signal("answer", {"size": "XXL"})
        assert exc.value.code == "SIGNAL_PAYLOAD_INVALID"
        with pytest.raises(Conflict):
            c.runs.signal(run.id, "nope", {})
        with pytest.raises(NotFound):
            c.runs.signal(str(uuid.uuid4()), "answer", {})
        result = run.signal("answer", {"size": "S"}, idempotency_key="k")
        assert result.step_id == "ask" and not result.duplicate
        final = c.runs.wait(run.id, timeout=30)
        assert final.status == "succeeded" and final.step("echo").output == "S"
        assert [s.status for s in c.runs.signals(run.id)] == ["signalled"]
