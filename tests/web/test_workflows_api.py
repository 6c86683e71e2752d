"""Workflows over HTTP: save (a new version each time), list, read versions, run a pinned version."""

from __future__ import annotations

import uuid

import pytest

from tests.support.worker import wait_for_run
from tests.web.api_helpers import auth, new_tenant, one_step_plan


def test_saving_versions_listing_and_reading_them(client, aos_env):
    _, key = new_tenant()
    v1 = client.post("/api/v1/workflows", json={"name": "digest", "plan": one_step_plan("a")}, headers=auth(key))
    assert v1.status_code == 201, v1.json
    assert (v1.json["name"], v1.json["version"]) == ("digest", 1) and len(v1.json["plan_hash"]) == 64
    v2 = client.post("/api/v1/workflows", json={"name": "digest", "plan": one_step_plan("b")}, headers=auth(key)).json
    other = client.post("/api/v1/workflows", json={"name": "other.flow_2", "plan": one_step_plan()},
                        headers=auth(key)).json
    assert v2["version"] == 2 and v2["plan_hash"] != v1.json["plan_hash"]

    latest = client.get("/api/v1/workflows/digest", headers=auth(key)).json
    assert latest == v2
    assert client.get("/api/v1/workflows/digest/versions/1", headers=auth(key)).json == v1.json
    assert client.get("/api/v1/workflows/digest/versions", headers=auth(key)).json["items"] == [v2, v1.json]

    page = client.get("/api/v1/workflows?limit=1", headers=auth(key)).json
    assert page["items"] == [other] and page["next_cursor"]
    page2 = client.get(f"/api/v1/workflows?limit=1&cursor={page['next_cursor']}", headers=auth(key)).json
    assert page2 == {"items": [v2], "next_cursor": None}  # only the latest version of each workflow

    for path in ("/api/v1/workflows/nope", "/api/v1/workflows/digest/versions/3", "/api/v1/workflows/nope/versions",
                 "/api/v1/workflows/digest/versions/99999999999"):
        r = client.get(path, headers=auth(key))
        assert r.status_code == 404 and r.json["code"] == "NOT_FOUND", path


@pytest.mark.parametrize(("body", "code", "path"), [
    ({"name": "has space", "plan": one_step_plan()}, "VALIDATION_ERROR", "$.name"),
    ({"name": "a/b", "plan": one_step_plan()}, "VALIDATION_ERROR", "$.name"),
    ({"name": "", "plan": one_step_plan()}, "VALIDATION_ERROR", "$.name"),
    ({"name": "ok", "plan": {"steps": []}}, "PLAN_INVALID", "$.steps"),
    ({"name": "ok", "plan": {"steps": [{"id": "a", "skill": "nope"}]}}, "SKILL_NOT_FOUND", "$.steps[0].skill"),
    ({"name": "ok"}, "VALIDATION_ERROR", "$.plan"),
    ({"name": "nul\u0000", "plan": one_step_plan()}, "VALIDATION_ERROR", None),
    ({"name": "ok", "plan": {**one_step_plan(), "description": "nul \u0000 inside"}}, "VALIDATION_ERROR",
     "$.plan.description"),
])
def test_invalid_workflows_are_refused_with_their_problems(client, tenant, body, code, path):
    _, key = tenant
    r = client.post("/api/v1/workflows", json=body, headers=auth(key))
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    assert r.json["code"] == code, r.json
    if path:
        assert path in [p["path"] for p in r.json["problems"]], r.json
    assert client.get("/api/v1/workflows", headers=auth(key)).json["items"] == []


def test_running_a_workflow_pins_the_version_it_started_with(client, worker):
    _, key = new_tenant()
    client.post("/api/v1/workflows", json={"name": "pick", "plan": one_step_plan("a")}, headers=auth(key))
    v2 = client.post("/api/v1/workflows", json={"name": "pick", "plan": one_step_plan("b")}, headers=auth(key)).json
    latest = client.post("/api/v1/workflows/pick/runs", json={}, headers=auth(key))
    pinned = client.post("/api/v1/workflows/pick/runs", json={"version": 1, "inputs": {"x": {"a": 7}}},
                         headers=auth(key))
    assert latest.status_code == 201 and pinned.status_code == 201, (latest.json, pinned.json)
    assert latest.json["workflow_id"] == v2["id"]
    for run, expected in ((latest.json, 2), (pinned.json, 7)):
        wait_for_run(uuid.UUID(run["id"]))
        done = client.get(f"/api/v1/runs/{run['id']}", headers=auth(key)).json
        assert done["status"] == "succeeded" and done["steps"][0]["output"] == expected
    listed = client.get("/api/v1/runs?workflow=pick", headers=auth(key)).json["items"]
    assert {r["id"] for r in listed} == {latest.json["id"], pinned.json["id"]}
    missing = client.post("/api/v1/workflows/pick/runs", json={"version": 9}, headers=auth(key))
    assert missing.status_code == 404 and missing.json["code"] == "NOT_FOUND"
    bad = client.post("/api/v1/workflows/pick/runs", json={"version": 0}, headers=auth(key))
    assert bad.status_code == 422 and bad.json["code"] == "VALIDATION_ERROR"
