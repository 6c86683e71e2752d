"""Reading runs: cursor pagination, filters, step detail, full outputs, errors explained by the catalog."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from aos.db.models import Run
from aos.db.session import session_scope
from aos.runtime.catalog import CATALOG
from aos.services.agents import create_agent
from aos.services.runs import submit_run
from aos.services.workflows import run_workflow, save_workflow
from tests.support.worker import wait_for_run
from tests.web.api_helpers import FAILING_PLAN, TRANSFORM_PLAN, auth, new_tenant, one_step_plan


def _ids(page: dict) -> list[str]:
    return [r["id"] for r in page["items"]]


def _all_pages(client, key: str, url: str, limit: int) -> list[str]:
    seen, cursor = [], None
    while True:
        sep = "&" if "?" in url else "?"
        page = client.get(f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), headers=auth(key))
        assert page.status_code == 200, page.json
        seen += _ids(page.json)
        cursor = page.json["next_cursor"]
        if cursor is None:
            return seen


def test_pages_cover_every_run_once_newest_first_and_stay_stable_under_inserts(client, aos_env):
    ctx, key = new_tenant()
    made = [str(submit_run(ctx, one_step_plan(), None)) for _ in range(5)]
    first = client.get("/api/v1/runs?limit=2", headers=auth(key)).json
    assert _ids(first) == made[::-1][:2] and first["next_cursor"]
    newer = [str(submit_run(ctx, one_step_plan(), None)) for _ in range(3)]  # inserted while paging
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = client.get(f"/api/v1/runs?limit=2&cursor={cursor}", headers=auth(key)).json
        rest += _ids(page)
        cursor = page["next_cursor"]
    assert _ids(first) + rest == made[::-1]  # no gap, no duplicate, none of the newer ones
    assert _all_pages(client, key, "/api/v1/runs", 3) == (made + newer)[::-1]
    last = client.get("/api/v1/runs?limit=8", headers=auth(key)).json
    assert len(last["items"]) == 8 and last["next_cursor"] is None


def test_runs_created_at_the_same_instant_are_paged_by_id(client, aos_env):
    ctx, key = new_tenant()
    made = [submit_run(ctx, one_step_plan(), None) for _ in range(5)]
    same = datetime(2030, 1, 1, tzinfo=UTC)
    with session_scope() as s:
        s.execute(update(Run).where(Run.id.in_(made)).values(created_at=same))
    assert _all_pages(client, key, "/api/v1/runs", 2) == [str(r) for r in sorted(made, reverse=True)]


@pytest.mark.parametrize("cursor", ["garbage", "e30", "WyJub3QtYS10aW1lIiwxXQ", "x" * 300,
                                    # valid base64 JSON, but a naive time / an id that is not a uuid
                                    "WyIyMDMwLTAxLTAxVDAwOjAwOjAwIiwiYSJd"])
def test_a_cursor_this_api_did_not_write_is_400_cursor_invalid(client, tenant, cursor):
    _, key = tenant
    r = client.get(f"/api/v1/runs?cursor={cursor}", headers=auth(key))
    assert r.status_code == 400 and r.content_type == "application/problem+json"
    assert r.json["code"] == "CURSOR_INVALID"


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "status=sleeping", "agent_id=nope",
                                   "created_after=yesterday", "workflow=a/b"])
def test_bad_list_parameters_are_422_validation_error(client, tenant, query):
    _, key = tenant
    r = client.get(f"/api/v1/runs?{query}", headers=auth(key))
    assert r.status_code == 422 and r.json["code"] == "VALIDATION_ERROR", r.json


def test_filters_by_status_agent_workflow_and_creation_time(client, aos_env):
    ctx, key = new_tenant()
    agent = create_agent(ctx, "filterer", {})
    plain = submit_run(ctx, one_step_plan(), None)
    by_agent = submit_run(ctx, one_step_plan(), None, agent_id=uuid.UUID(agent["id"]))
    save_workflow(ctx, "wf-filter", one_step_plan())
    by_workflow = run_workflow(ctx, "wf-filter", None)
    save_workflow(ctx, "wf-filter", one_step_plan("b"))  # a second version: still the same workflow
    by_workflow_v2 = run_workflow(ctx, "wf-filter", None)
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    with session_scope() as s:
        for i, rid in enumerate((plain, by_agent, by_workflow, by_workflow_v2)):
            s.execute(update(Run).where(Run.id == rid).values(created_at=t0 + timedelta(hours=i)))
        s.execute(update(Run).where(Run.id == by_agent).values(status="failed"))

    def ids(query: str) -> set[uuid.UUID]:
        r = client.get(f"/api/v1/runs?{query}", headers=auth(key))
        assert r.status_code == 200, r.json
        return {uuid.UUID(x["id"]) for x in r.json["items"]}

    assert ids("status=failed") == {by_agent}
    assert ids("status=queued") == {plain, by_workflow, by_workflow_v2}
    assert ids(f"agent_id={agent['id']}") == {by_agent}
    assert ids("workflow=wf-filter") == {by_workflow, by_workflow_v2}
    assert ids("workflow=no-such-workflow") == set()
    # created_after inclusive, created_before exclusive; a time without offset is UTC
    assert ids("created_after=2031-05-01T13:00:00%2B00:00&created_before=2031-05-01T15:00:00Z") == {
        by_agent, by_workflow}
    assert ids("created_after=2031-05-01T14:00:00") == {by_workflow, by_workflow_v2}
    assert ids("created_before=2031-05-01T14:00:01%2B02:00") == {plain}  # 12:00:01 UTC
    assert ids("created_before=2031-05-01T14:00:00%2B02:00") == set()  # exclusive
    assert ids("status=queued&workflow=wf-filter&created_before=2031-05-01T15:00:00Z") == {by_workflow}


def test_step_detail_lists_attempts_and_large_outputs_come_by_reference(client, worker, settings_env):
    ctx, key = new_tenant()
    run_id = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=auth(key)).json["id"]
    wait_for_run(uuid.UUID(run_id))
    step = client.get(f"/api/v1/runs/{run_id}/steps/qtys", headers=auth(key))
    assert step.status_code == 200, step.json
    body = step.json
    assert body["id"] == "qtys" and body["index"] == 1 and body["status"] == "succeeded" and body["output"] == [2, 3]
    [attempt] = body["attempts"]
    assert attempt["attempt"] == 1 and attempt["status"] == "succeeded" and attempt["output"] == [2, 3]
    assert attempt["args"] == {"input": TRANSFORM_PLAN["inputs"]["order"]["items"], "expr": "[*].qty"}
    # which process ran it (host:pid) is the operator's business (test_the_worker_that_ran_a_step_is_shown_…)
    assert attempt["worker"] is None and attempt["duration_ms"] is not None and attempt["error"] is None
    assert client.get(f"/api/v1/runs/{run_id}/steps/qtys/output", headers=auth(key)).json == {"output": [2, 3]}

    settings_env(AOS_LARGE_OUTPUT_BYTES="10")  # the items list is longer than 10 characters
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    items = next(s for s in run["steps"] if s["id"] == "items")
    assert items["output"] is None and items["output_ref"] == f"/api/v1/runs/{run_id}/steps/items/output"
    detail = client.get(items["output_ref"], headers=auth(key)).json
    assert detail == {"output": TRANSFORM_PLAN["inputs"]["order"]["items"]}

    missing = client.get(f"/api/v1/runs/{run_id}/steps/nope", headers=auth(key))
    assert missing.status_code == 404 and missing.json["code"] == "STEP_NOT_FOUND"
    assert client.get(f"/api/v1/runs/{run_id}/steps/nope/output", headers=auth(key)).json["code"] == \
        "STEP_NOT_FOUND"


def test_a_failed_run_explains_its_error_with_the_catalog(client, worker):
    ctx, key = new_tenant()
    run_id = client.post("/api/v1/runs", json={"plan": FAILING_PLAN}, headers=auth(key)).json["id"]
    wait_for_run(uuid.UUID(run_id))
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    entry = CATALOG.get("JSON_SCHEMA_MISMATCH")
    assert run["status"] == "failed"
    error = run["error"]
    assert error["code"] == "JSON_SCHEMA_MISMATCH" and error["message"]
    assert (error["category"], error["retryable"], error["recovery_mode"]) == (
        str(entry.category), entry.retryable, str(entry.recovery))
    assert error["suggestion"] and error["suggestion"].lower() in entry.description.lower()
    check = next(s for s in run["steps"] if s["id"] == "check")
    assert check["status"] == "failed" and check["error"]["code"] == "JSON_SCHEMA_MISMATCH"
    assert check["error"]["suggestion"] == error["suggestion"]
    detail = client.get(f"/api/v1/runs/{run_id}/steps/check", headers=auth(key)).json
    assert detail["attempts"][0]["error"]["recovery_mode"] == str(entry.recovery)
    no_output = client.get(f"/api/v1/runs/{run_id}/steps/check/output", headers=auth(key))
    assert no_output.status_code == 404 and no_output.json["code"] == "NOT_FOUND"
    listed = client.get("/api/v1/runs?status=failed", headers=auth(key)).json["items"]
    assert listed[0]["id"] == run_id and listed[0]["error"]["suggestion"] == error["suggestion"]
    # a finished run cannot be cancelled; a failed one resumes (and fails again, deterministically)
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(key)).json["code"] == "CONFLICT"
    resumed = client.post(f"/api/v1/runs/{run_id}/resume", headers=auth(key))
    assert resumed.status_code == 200 and resumed.json["status"] in ("queued", "running", "failed")
    wait_for_run(uuid.UUID(run_id))


def test_timeline_after_id_returns_only_later_events(client, worker):
    ctx, key = new_tenant()
    run_id = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=auth(key)).json["id"]
    wait_for_run(uuid.UUID(run_id))
    events = client.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(key)).json["items"]
    later = client.get(f"/api/v1/runs/{run_id}/timeline?after_id={events[2]['id']}", headers=auth(key)).json
    assert later["items"] == events[3:]
    assert client.post(f"/api/v1/runs/{run_id}/resume", headers=auth(key)).json["code"] == "CONFLICT"


@pytest.mark.parametrize(("scopes", "method", "path", "allowed"), [
    (("runs:read",), "get", "/api/v1/runs", True),
    (("runs:read",), "post", "/api/v1/runs", False),
    (("runs:write",), "get", "/api/v1/runs", False),
    (("runs:write",), "post", "/api/v1/workflows", True),
    (("runs:read",), "post", "/api/v1/agents", False),
    (("runs:read",), "post", "/api/v1/simulate", True),
    (("runs:write",), "get", "/api/v1/inspect", False),
    (("runs:read",), "get", "/api/v1/inspect", True),  # the tenant's own figures (queues and workers: operator)
    (("admin",), "get", "/api/v1/inspect", True),
])
def test_scopes_reads_need_read_writes_need_write(client, aos_env, scopes, method, path,
                                                                       allowed):
    _, key = new_tenant(scopes)
    body = {"/api/v1/runs": {"plan": one_step_plan()}, "/api/v1/workflows": {"name": "scoped", "plan": one_step_plan()},
            "/api/v1/agents": {"name": "scoped"}, "/api/v1/simulate": {"plan": one_step_plan()}}.get(path)
    r = getattr(client, method)(path, json=body, headers=auth(key)) if method == "post" else \
        client.get(path, headers=auth(key))
    if allowed:
        assert r.status_code in (200, 201), r.json
    else:
        assert r.status_code == 403 and r.json["code"] == "FORBIDDEN_SCOPE"


def test_the_worker_that_ran_a_step_is_shown_to_operators_only(client, worker, aos_env):
    """host:pid of the process that ran a step describes the deployment: tenants do not see it."""
    from aos.db.models import Tenant
    from aos.db.session import session_scope
    from aos.services.runs import submit_run
    from aos.services.tenancy import create_api_key
    from aos.tasks.publisher import CeleryPublisher
    from tests.support.worker import wait_for_run
    from tests.web.api_helpers import TRANSFORM_PLAN, auth, new_tenant

    ctx, key = new_tenant()
    with session_scope() as s:
        ops, _ = create_api_key(s, s.get(Tenant, ctx.tenant_id), "ops", ("runs:read", "operator"))
    run_id = submit_run(ctx, TRANSFORM_PLAN, CeleryPublisher())
    wait_for_run(run_id)
    tenant_events = client.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(key)).json["items"]
    ops_events = client.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(ops)).json["items"]
    started = [e for e in ops_events if e["type"] == "step.started"]
    assert started and all(":" in e["data"]["worker"] for e in started)
    assert all("worker" not in e["data"] for e in tenant_events)
    step = client.get(f"/api/v1/runs/{run_id}/steps/items", headers=auth(key)).json
    assert [a["worker"] for a in step["attempts"]] == [None]
    ops_step = client.get(f"/api/v1/runs/{run_id}/steps/items", headers=auth(ops)).json
    assert ops_step["attempts"][0]["worker"]
