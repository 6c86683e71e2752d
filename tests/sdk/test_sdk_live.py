"""The SDK end to end against the live API: a real HTTP server, Postgres, the broker and a Celery worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import httpx
import pytest

from aos.sdk import (
    Agent,
    AosApiError,
    AsyncClient,
    CatalogEntry,
    Client,
    Conflict,
    Event,
    NotFound,
    Run,
    RunSummary,
    RunWaitTimeout,
    Simulation,
    Unauthorized,
    ValidationFailed,
    Workflow,
)
from tests.support.http_server import Reply, serve_http

ROOT = Path(__file__).resolve().parent.parent.parent
FAILING = json.loads((ROOT / "examples" / "failing.json").read_text())

SUM_PLAN = {
    "name": "sdk-sum",
    "inputs": {"items": [{"qty": 2}, {"qty": 3}]},
    "steps": [
        {"id": "qtys", "skill": "json.transform", "args": {"input": {"$ref": "inputs.items"}, "expr": "[*].qty"}},
        {"id": "total", "skill": "json.transform", "args": {"input": {"$ref": "steps.qtys.output"}, "expr": "sum(@)"}},
    ],
}
INVALID_PLAN = {"name": "bad", "steps": [
    {"id": "a", "skill": "no.such.skill", "args": {}},
    {"id": "b", "skill": "json.transform", "args": {"input": {"$ref": "steps.zzz.output"}, "expr": "@"}},
]}


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests the client really sends (to see that pagination is lazy)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path + ("?" + request.url.query.decode() if request.url.query else ""))
        return super().handle_request(request)


@pytest.fixture
def sdk(live_api, tenant):
    with Client(live_api, tenant[1]) as client:
        yield client


def _other_tenant_key() -> str:
    from aos.db.session import session_scope
    from aos.services.tenancy import create_api_key, create_tenant

    with session_scope() as s:
        t = create_tenant(s, f"other-{uuid.uuid4().hex[:10]}")
        key, _ = create_api_key(s, t, "other", ("runs:read", "runs:write", "admin"))
    return key


# --- runs ------------------------------------------------------------------------------------------------------


def test_submit_then_wait_gives_the_succeeded_run_with_typed_steps(sdk, worker):
    run = sdk.runs.create(SUM_PLAN, inputs={"items": [{"qty": 4}, {"qty": 6}]})
    assert isinstance(run, Run) and run.status in ("queued", "running", "succeeded")
    assert run.steps_total == 2 and run.inputs == {"items": [{"qty": 4}, {"qty": 6}]}

    final = run.wait(timeout=60)
    assert isinstance(final, Run) and final.status == "succeeded" and final.is_final, worker.tail()
    assert [(s.id, s.status, s.output) for s in final.steps] == [("qtys", "succeeded", [4, 6]),
                                                                 ("total", "succeeded", 10)]
    assert final.step("total").attempts == 1 and final.step("total").duration_ms is not None
    assert isinstance(final.finished_at, datetime) and final.finished_at.tzinfo is not None
    assert final.raw["id"] == run.id  # the JSON the API sent, for scripts

    detail = sdk.runs.step(run.id, "total")
    assert detail.status == "succeeded" and len(detail.attempts) == 1
    attempt = detail.attempts[0]
    assert attempt.attempt == 1 and attempt.status == "succeeded" and attempt.output == 10
    assert attempt.args == {"input": [4, 6], "expr": "sum(@)"} and attempt.worker is None  # operators only
    assert sdk.runs.step_output(run.id, "total") == 10

    types = [e.type for e in sdk.runs.timeline(run.id)]
    assert types[0] == "run.queued" and types[-1] == "run.succeeded" and types.count("step.succeeded") == 2


def test_wait_times_out_with_the_last_state_seen(sdk, worker):
    slow = Reply(json={"ok": True}, delay_s=3)  # the step's HTTP call takes 3 s
    with serve_http({"/slow": slow}) as srv:
        run = sdk.runs.create({"name": "slow", "steps": [
            {"id": "call", "skill": "http.request", "args": {"url": srv.url("/slow")}, "timeout_s": 10}]})
        with pytest.raises(RunWaitTimeout) as exc:
            run.wait(timeout=0.5)
        assert exc.value.run_id == run.id and exc.value.last.status in ("queued", "running")
        assert run.wait(timeout=30).status == "succeeded"


def test_the_event_stream_shows_each_step_then_end_and_resumes_after_an_id(sdk, worker):
    run = sdk.runs.create(SUM_PLAN)
    events = list(sdk.runs.events(run.id, timeout=60))
    assert all(isinstance(e, Event) for e in events)
    types = [e.type for e in events]
    assert types[0] == "run.queued" and types[-2] == "run.succeeded" and types[-1] == "end", types
    assert [e.step_id for e in events if e.type == "step.succeeded"] == ["qtys", "total"]
    ids = [e.id for e in events[:-1]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    end = events[-1]
    assert isinstance(end.run, RunSummary) and end.run.status == "succeeded" and end.run.id == run.id

    later = list(sdk.runs.events(run.id, after_id=ids[2]))
    assert [e.id for e in later[:-1]] == ids[3:] and later[-1].type == "end"


def test_the_event_stream_resumes_when_the_server_closes_it_early(live_api, tenant, worker, settings_env):
    settings_env(AOS_SSE_MAX_S="0.6", AOS_SSE_KEEPALIVE_S="0.2")  # the server ends each stream after 0.6 s
    transport = CountingTransport()
    with serve_http({"/slow": Reply(json={"ok": True}, delay_s=2.5)}) as srv, \
            Client(live_api, tenant[1], transport=transport) as sdk:
        run = sdk.runs.create({"name": "long", "steps": [
            {"id": "call", "skill": "http.request", "args": {"url": srv.url("/slow")}},
            {"id": "after", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]})
        events = list(sdk.runs.events(run.id, timeout=60))
        timeline = [e.id for e in sdk.runs.timeline(run.id)]
    streams = [p for p in transport.paths if p.endswith("/events")]
    assert len(streams) >= 2  # it was cut at least once mid-run and reconnected
    assert [e.id for e in events[:-1]] == timeline  # no event lost, none repeated
    assert events[-1].type == "end" and events[-1].run.status == "succeeded"


def test_a_failed_run_carries_its_catalog_code_and_recovery(sdk, worker):
    final = sdk.runs.create(FAILING).wait(timeout=60)
    assert final.status == "failed"
    err = final.error
    assert err.code == "JSON_SCHEMA_MISMATCH" and err.recovery_mode == "ABORT" and err.retryable is False
    assert err.category == "plan" and err.suggestion and err.message
    step = final.step("check")
    assert step.status == "failed" and step.error.code == "JSON_SCHEMA_MISMATCH"
    assert final.step("confirm").status == "not_run"
    entry = sdk.errors.get(err.code)
    assert isinstance(entry, CatalogEntry) and entry.recovery_mode == err.recovery_mode
    assert entry.http_status == 422 and entry.description


def test_list_yields_every_run_across_pages_newest_first_and_lazily(live_api, tenant):
    transport = CountingTransport()
    with Client(live_api, tenant[1], transport=transport) as sdk:
        created = [sdk.runs.create({**SUM_PLAN, "name": f"page-{i}"}).id for i in range(5)]
        transport.paths.clear()

        first_two = list(islice(sdk.runs.list(page_size=2), 2))
        assert [r.id for r in first_two] == created[::-1][:2]
        assert len(transport.paths) == 1  # one page fetched for two items

        listed = list(sdk.runs.list(page_size=2))
        assert [r.id for r in listed] == created[::-1]  # this tenant's runs only, newest first
        assert all(isinstance(r, RunSummary) for r in listed)
        assert len(transport.paths) == 1 + 3 and "cursor=" in transport.paths[-1]

        pages = list(sdk.runs.list(page_size=2).pages())
        assert [len(p.items) for p in pages] == [2, 2, 1] and pages[-1].next_cursor is None

        page = sdk.runs.page(limit=3)
        assert len(page.items) == 3 and page.next_cursor
        rest = sdk.runs.page(limit=3, cursor=page.next_cursor)
        assert [r.id for r in page.items + rest.items] == created[::-1]


def test_list_filters_by_status_and_time(sdk, worker):
    ok = sdk.runs.create(SUM_PLAN).wait(timeout=60)
    bad = sdk.runs.create(FAILING).wait(timeout=60)
    assert [r.id for r in sdk.runs.list(status="failed")] == [bad.id]
    assert [r.id for r in sdk.runs.list(status="succeeded")] == [ok.id]
    after = ok.created_at + timedelta(microseconds=1)
    assert [r.id for r in sdk.runs.list(created_after=after)] == [bad.id]
    assert [r.id for r in sdk.runs.list(created_before=after)] == [ok.id]
    assert list(sdk.runs.list(created_after=datetime.now(UTC) + timedelta(hours=1))) == []


def test_errors_carry_codes_404_422_401_409_and_a_bad_cursor(sdk, live_api, worker):
    with pytest.raises(NotFound) as nf:
        sdk.runs.get(str(uuid.uuid4()))
    assert nf.value.code == "NOT_FOUND" and nf.value.status == 404

    with pytest.raises(ValidationFailed) as vf:
        sdk.runs.create(INVALID_PLAN)
    assert vf.value.status == 422
    codes = {(p["path"], p["code"]) for p in vf.value.problems}
    assert ("$.steps[0].skill", "SKILL_NOT_FOUND") in codes
    assert any(code == "REF_UNRESOLVED" and path.startswith("$.steps[1]") for path, code in codes), codes

    with pytest.raises(ValidationFailed) as cur:
        sdk.runs.page(cursor="not-a-cursor")
    assert cur.value.code == "CURSOR_INVALID" and cur.value.status == 400

    done = sdk.runs.create(SUM_PLAN).wait(timeout=60)
    with pytest.raises(Conflict) as conflict:
        done.resume()
    assert conflict.value.status == 409

    with Client(live_api, "aos_nothere_secret") as bad_key, pytest.raises(Unauthorized) as unauth:
        bad_key.runs.page()
    assert unauth.value.code == "AUTH_INVALID"


def test_another_tenants_run_is_not_found(sdk, live_api):
    run = sdk.runs.create(SUM_PLAN)
    with Client(live_api, _other_tenant_key()) as other:
        with pytest.raises(NotFound) as exc:
            other.runs.get(run.id)
        assert exc.value.code == "NOT_FOUND"
        assert run.id not in [r.id for r in other.runs.list()]


# --- workflows, agents, the rest ---------------------------------------------------------------------------------


def test_workflows_save_versions_get_and_run(sdk, worker):
    name = f"wf-{uuid.uuid4().hex[:8]}"
    v1 = sdk.workflows.save(name, SUM_PLAN)
    v2 = sdk.workflows.save(name, {**SUM_PLAN, "inputs": {"items": [{"qty": 100}]}})
    assert isinstance(v1, Workflow) and (v1.version, v2.version) == (1, 2) and v1.plan_hash != v2.plan_hash
    assert sdk.workflows.get(name).version == 2
    assert sdk.workflows.get(name, version=1).plan == v1.plan
    assert [w.version for w in sdk.workflows.versions(name)] == [2, 1]
    assert {(w.name, w.version) for w in sdk.workflows.list(page_size=1)} == {(name, 2)}

    run = sdk.workflows.run(name, version=1).wait(timeout=60)
    assert run.status == "succeeded" and run.step("total").output == 5 and run.workflow_id == v1.id
    latest = sdk.workflows.run(name).wait(timeout=60)
    assert latest.step("total").output == 100
    assert {r.id for r in sdk.runs.list(workflow=name)} == {run.id, latest.id}

    with pytest.raises(NotFound):
        sdk.workflows.get(name, version=3)


def test_agents_create_runs_provenance_and_state(sdk, worker):
    agent = sdk.agents.create(f"ag-{uuid.uuid4().hex[:6]}", capabilities={"allowed_skills": ["json.transform"]})
    assert isinstance(agent, Agent) and agent.capabilities == {"allowed_skills": ["json.transform"]}
    assert sdk.agents.get(agent.id).name == agent.name
    assert [a.id for a in sdk.agents.list()] == [agent.id]

    run = sdk.runs.create(SUM_PLAN, agent_id=agent.id).wait(timeout=60)
    assert run.status == "succeeded" and run.agent_id == agent.id
    assert [r.id for r in sdk.agents.runs(agent.id)] == [run.id]
    assert sdk.agents.run(agent.id, run.id).id == run.id
    prov = list(sdk.agents.provenance(agent.id))
    assert [p.run_id for p in prov] == [run.id]
    assert prov[0].skills == {"qtys": "json.transform@1", "total": "json.transform@1"}
    assert prov[0].plan_hash == run.plan_hash

    with pytest.raises(AosApiError) as denied:
        sdk.runs.create(FAILING, agent_id=agent.id)  # json.validate is not allowed for this agent
    assert denied.value.code == "CAPABILITY_DENIED"

    state = sdk.agents.set_state(agent.id, {"cursor": 42, "seen": ["a"]})
    assert state.state == {"cursor": 42, "seen": ["a"]} and state.updated_at is not None
    assert sdk.agents.state(agent.id).state == {"cursor": 42, "seen": ["a"]}


def test_simulate_estimates_without_running(sdk):
    before = len(list(sdk.runs.list()))
    sim = sdk.simulate(SUM_PLAN)
    assert isinstance(sim, Simulation) and [s.id for s in sim.steps] == ["qtys", "total"]
    assert all(s.skill.split("@")[0] == "json.transform" and s.basis in ("cost_model", "history") for s in sim.steps)
    assert sim.total["estimated_cost_usd"] >= 0 and sim.budget.verdict in ("within", "unlimited")
    assert sim.capabilities.verdict == "not_checked"
    assert len(list(sdk.runs.list())) == before  # nothing ran
    with pytest.raises(ValidationFailed) as exc:
        sdk.simulate(INVALID_PLAN)
    assert {p["code"] for p in exc.value.problems} >= {"SKILL_NOT_FOUND"}


def test_skills_errors_and_inspect(sdk):
    recommended = sdk.skills.list(recommended=True)
    assert recommended and all(s.recommended for s in recommended)
    assert recommended[0].name == "json.transform" and recommended[0].rank == 1
    assert len(sdk.skills.list()) > len(recommended)
    entries = sdk.errors.list()
    assert len(entries) >= 50 and {"NOT_FOUND", "RATE_LIMITED"} <= {e.code for e in entries}
    inspection = sdk.inspect()
    assert inspection.scope == "tenant" and inspection.queues is None and "pending" in inspection.outbox


# --- the async client -------------------------------------------------------------------------------------------


def test_the_async_client_end_to_end(live_api, tenant, worker):
    async def main():
        async with AsyncClient(live_api, tenant[1]) as sdk:
            run = await sdk.runs.create(SUM_PLAN)
            events = [e async for e in sdk.runs.events(run.id, timeout=60)]
            final = await run.wait(timeout=30)
            created = [(await sdk.runs.create({**SUM_PLAN, "name": f"a-{i}"})).id for i in range(3)]
            listed = [r.id async for r in sdk.runs.list(page_size=2)]
            pages = [p async for p in sdk.runs.list(page_size=2).pages()]
            try:
                await sdk.runs.get(str(uuid.uuid4()))
            except NotFound as exc:
                not_found = exc
            try:
                await sdk.runs.create(INVALID_PLAN)
            except ValidationFailed as exc:
                invalid = exc
            name = f"awf-{uuid.uuid4().hex[:6]}"
            wf = await sdk.workflows.save(name, SUM_PLAN)
            wf_run = await (await sdk.workflows.run(name)).wait(timeout=60)
            agent = await sdk.agents.create(f"aag-{uuid.uuid4().hex[:6]}")
            agents = await sdk.agents.list().to_list()
            sim = await sdk.simulate(SUM_PLAN)
            entry = await sdk.errors.get("RATE_LIMITED")
            return (run, events, final, created, listed, pages, not_found, invalid, wf, wf_run, agent, agents, sim,
                    entry)

    (run, events, final, created, listed, pages, not_found, invalid, wf, wf_run, agent, agents, sim,
     entry) = asyncio.run(main())
    assert [e.type for e in events][-1] == "end" and events[-1].run.status == "succeeded"
    assert [e.step_id for e in events if e.type == "step.succeeded"] == ["qtys", "total"]
    assert final.status == "succeeded" and final.step("total").output == 5
    assert listed == created[::-1] + [run.id] and [len(p.items) for p in pages] == [2, 2]
    assert not_found.code == "NOT_FOUND" and not_found.status == 404
    assert "SKILL_NOT_FOUND" in {p["code"] for p in invalid.problems}
    assert wf.version == 1 and wf_run.status == "succeeded" and wf_run.workflow_id == wf.id
    assert [a.id for a in agents] == [agent.id]
    assert [s.id for s in sim.steps] == ["qtys", "total"]
    assert entry.recovery_mode == "RETRY_AFTER" and entry.retryable is True
