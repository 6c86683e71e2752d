"""Another tenant's objects do not exist for you: every endpoint with an id or a name in its path is a 404
NOT_FOUND for them (never a 403 that confirms they exist), changes nothing, and no list shows them."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from aos.db.models import DeadLetter, Run
from aos.db.session import session_scope
from aos.services import recovery
from aos.services.agents import create_agent, put_state
from aos.services.runs import submit_run
from aos.services.workflows import run_workflow, save_workflow
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run
from tests.web.api_helpers import FAILING_PLAN, TRANSFORM_PLAN, auth, new_caller, new_tenant, one_step_plan

CALLERS = ["key", "jwt"]  # tenant B calls with an API key, and with a JWT bearer token

# Every operation with an object of a tenant in its path (test_every_such_endpoint_is_covered keeps this
# list complete against the OpenAPI document), with the body that would be valid for its owner.
ENDPOINTS = [
    ("GET", "/api/v1/runs/{run_id}", None),
    ("GET", "/api/v1/runs/{run_id}/timeline", None),
    ("GET", "/api/v1/runs/{run_id}/events", None),
    ("GET", "/api/v1/runs/{run_id}/steps/{step_id}", None),
    ("GET", "/api/v1/runs/{run_id}/steps/{step_id}/output", None),
    ("POST", "/api/v1/runs/{queued_run_id}/cancel", None),
    ("POST", "/api/v1/runs/{failed_run_id}/resume", None),
    ("GET", "/api/v1/runs/{waiting_run_id}/signals", None),
    # the waiting run waits for a signal named like the workflow ({name})
    ("POST", "/api/v1/runs/{waiting_run_id}/signals/{name}", {"data": {"owned": "by B"}}),
    ("POST", "/api/v1/runs/{run_id}/golden", None),
    ("POST", "/api/v1/golden/replay/{run_id}/report", {"document": {}}),
    ("GET", "/api/v1/workflows/{name}", None),
    ("GET", "/api/v1/workflows/{name}/versions", None),
    ("GET", "/api/v1/workflows/{name}/versions/{version}", None),
    ("POST", "/api/v1/workflows/{name}/runs", {}),
    ("GET", "/api/v1/agents/{agent_id}", None),
    ("GET", "/api/v1/agents/{agent_id}/runs", None),
    ("GET", "/api/v1/agents/{agent_id}/runs/{agent_run_id}", None),
    ("GET", "/api/v1/agents/{agent_id}/provenance", None),
    ("GET", "/api/v1/agents/{agent_id}/state", None),
    ("PUT", "/api/v1/agents/{agent_id}/state", {"state": {"owned": "by B"}}),
    ("GET", "/api/v1/dead-letters/{dead_letter_id}", None),
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/replay", None),
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/discard", None),
    ("GET", "/api/v1/runs/{run_id}/recovery", None),
    ("POST", "/api/v1/runs/{failed_run_id}/recovery/{suggestion_id}/feedback", {"helpful": False}),
    ("POST", "/api/v1/runs/{failed_run_id}/recovery/{suggestion_id}/apply", None),
]
# public, not a tenant's object
NOT_TENANT_OBJECTS = {("GET", "/api/v1/errors/{code}")}


@pytest.fixture(scope="module")
def tenant_a(worker):
    """Tenant A with one object of every kind, finished where it matters; and A's view of them."""
    ctx, key = new_tenant()
    agent = create_agent(ctx, "a-agent", {})
    put_state(ctx, agent["id"], {"secret": 42})
    save_workflow(ctx, "a-flow", one_step_plan())
    done = submit_run(ctx, TRANSFORM_PLAN, CeleryPublisher(), agent_id=uuid.UUID(agent["id"]))
    failed = submit_run(ctx, FAILING_PLAN, CeleryPublisher())
    from_flow = run_workflow(ctx, "a-flow", CeleryPublisher())
    for r in (done, failed, from_flow):
        wait_for_run(r)
    queued = submit_run(ctx, one_step_plan(), None)  # never published: stays queued
    waiting = submit_run(ctx, {"steps": [{"id": "ask", "skill": "signal.wait", "args": {"signal": "a-flow"}}]},
                         CeleryPublisher())
    wait_for_run(waiting, statuses=("waiting",))
    with session_scope() as s:
        dl = DeadLetter(tenant_id=ctx.tenant_id, kind="step", run_id=failed, step_id="check",
                        payload={"run_id": str(failed)}, error_code="JSON_SCHEMA_MISMATCH", error_message="x")
        s.add(dl)
        s.flush()
        dead_letter_id = dl.id
    suggestion = recovery.suggest_for_run(failed)  # the worker makes it too: the same one (once per failure)
    ids = {"run_id": done, "queued_run_id": queued, "failed_run_id": failed, "step_id": "items",
           "name": "a-flow", "version": 1, "agent_id": agent["id"], "agent_run_id": done,
           "dead_letter_id": dead_letter_id, "waiting_run_id": waiting, "suggestion_id": suggestion["id"]}
    return ctx, key, ids, {"runs": [done, failed, from_flow, queued, waiting]}


def _a_view(client, key: str, ids: dict) -> dict:
    """Everything A can read about its objects (compared before and after B's attempts)."""
    get = lambda path: client.get(path, headers=auth(key)).json  # noqa: E731
    return {
        "runs": [get(f"/api/v1/runs/{ids[k]}") for k in ("run_id", "queued_run_id", "failed_run_id",
                                                          "waiting_run_id")],
        "signals": get(f"/api/v1/runs/{ids['waiting_run_id']}/signals"),
        "timeline": get(f"/api/v1/runs/{ids['run_id']}/timeline"),
        "workflow": get("/api/v1/workflows/a-flow/versions"),
        "agent": get(f"/api/v1/agents/{ids['agent_id']}"),
        "state": get(f"/api/v1/agents/{ids['agent_id']}/state"),
        "dead_letter": get(f"/api/v1/dead-letters/{ids['dead_letter_id']}"),
        "recovery": get(f"/api/v1/runs/{ids['failed_run_id']}/recovery"),
        "run_count": _run_count(),
    }


def _run_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Run))


def _fill(template: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "template", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_another_tenants_object_is_404_and_stays_unchanged(client, tenant_a, settings_env, method, template, body,
                                                           caller):
    settings_env(AOS_GOLDEN_SECRET="isolation-test")  # so golden recording reaches its tenant check
    _, key_a, ids, _ = tenant_a
    _, key_b = new_caller(caller, settings_env)
    path = _fill(template, ids)
    before = _a_view(client, key_a, ids)
    r = client.open(path, method=method, json=body, headers=auth(key_b))
    assert r.status_code == 404, (path, r.status_code, r.get_data(as_text=True))
    assert r.content_type == "application/problem+json"
    # the contract's code; the dead-letter resource uses its own 404 code, as precise and as silent
    assert r.json["code"] == ("DEAD_LETTER_NOT_FOUND" if "/dead-letters/" in template else "NOT_FOUND")
    assert _a_view(client, key_a, ids) == before
    # and the owner is not refused the same request (the 404 is about who asks, not about the object)
    if method == "GET":
        assert client.get(path, headers=auth(key_a)).status_code == 200, path


def test_every_such_endpoint_is_covered(client, aos_env):
    spec = client.get("/api/v1/openapi.json").json
    with_params = {(method.upper(), path) for path, ops in spec["paths"].items() if "{" in path
                   for method in ops if method in ("get", "post", "put", "patch", "delete")}
    covered = {(m, re.sub(r"\{(queued_run_id|failed_run_id|waiting_run_id)\}", "{run_id}",
                          re.sub(r"\{agent_run_id\}", "{run_id}", p))) for m, p, _ in ENDPOINTS}
    assert with_params - NOT_TENANT_OBJECTS == covered


@pytest.mark.parametrize("caller", CALLERS)
def test_lists_and_filters_never_show_another_tenants_objects(client, tenant_a, settings_env, caller):
    ctx_a, key_a, ids, objects = tenant_a
    _, key_b = new_caller(caller, settings_env)
    b_run = client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(key_b)).json["id"]
    # B may use the same workflow and agent names: they are B's own
    assert client.post("/api/v1/workflows", json={"name": "a-flow", "plan": one_step_plan()},
                       headers=auth(key_b)).json["version"] == 1
    assert client.post("/api/v1/agents", json={"name": "a-agent"}, headers=auth(key_b)).status_code == 201

    def items(path: str) -> list[dict]:
        r = client.get(path, headers=auth(key_b))
        assert r.status_code == 200, r.json
        return r.json["items"]

    a_runs = {str(r) for r in objects["runs"]}
    assert [r["id"] for r in items("/api/v1/runs?limit=200")] == [b_run]
    assert items(f"/api/v1/runs?agent_id={ids['agent_id']}") == []
    assert [r["id"] for r in items("/api/v1/runs?workflow=a-flow")] == []
    assert [w["name"] for w in items("/api/v1/workflows")] == ["a-flow"]
    assert items("/api/v1/workflows")[0]["id"] != client.get("/api/v1/workflows/a-flow",
                                                             headers=auth(key_a)).json["id"]
    assert [a["name"] for a in items("/api/v1/agents")] == ["a-agent"]
    assert ids["agent_id"] not in {a["id"] for a in items("/api/v1/agents")}
    assert ids["dead_letter_id"] not in {d["id"] for d in items("/api/v1/dead-letters")}
    assert not a_runs & {r["id"] for r in items("/api/v1/runs?limit=200")}
    inspect_b = client.get("/api/v1/inspect", headers=auth(key_b)).json
    assert inspect_b["dead_letters"]["open"] == 0 and inspect_b["runs"]["queued"] <= 1
    # A's agent cannot be borrowed to run or to simulate
    for path in ("/api/v1/runs", "/api/v1/simulate"):
        r = client.post(path, json={"plan": one_step_plan(), "agent_id": ids["agent_id"]}, headers=auth(key_b))
        assert r.status_code == 404 and r.json["code"] == "NOT_FOUND", path
