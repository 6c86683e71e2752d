"""Concurrency limits against real Postgres, Redis and prefork workers: a tenant's cap, a workflow's and an
agent's ``concurrency`` (per key of the inputs), submission order, cancel and resume, and a worker killed
(SIGKILL) while it holds a slot.

Each step is an HTTP request to a local server whose handler holds the request until the test lets it
go (``Gate``), so the test decides when a run finishes and a slot frees.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from aos.db.models import OutboxMessage, Run, Tenant
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.tenancy import set_max_running_runs
from tests.support.http_server import RecordedRequest, Reply, serve_http
from tests.support.worker import pid_of, wait_for_run


class Gate:
    """Requests to ``/hold?who=<label>`` wait until ``release(label)``; ``arrived`` lists who came, in order."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _event(self, who: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(who, threading.Event())

    def handle(self, req: RecordedRequest) -> Reply:
        who = req.query["who"][0]
        with self.lock:
            self.arrived.append(who)
        self._event(who).wait(60)
        return Reply(json={"who": who})

    def release(self, who: str) -> None:
        self._event(who).set()

    def release_all(self) -> None:
        with self.lock:
            labels = {*self.events, *self.arrived}
        for who in labels:
            self.release(who)


@pytest.fixture
def gate():
    g = Gate()
    with serve_http({"GET /hold": g.handle}) as srv:
        g.url = srv.url("/hold")  # type: ignore[attr-defined]
        yield g
        g.release_all()


def _plan(url: str, who: str, *, concurrency: dict[str, Any] | None = None, name: str = "held",
          inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "name": name, "inputs": inputs or {},
        "steps": [{"id": "hold", "skill": "http.request", "timeout_s": 30,
                   "args": {"method": "GET", "url": f"{url}?who={who}"}}]}
    if concurrency is not None:
        plan["concurrency"] = concurrency
    return plan


def _submit(ctx, plan: dict[str, Any], **kw: Any) -> uuid.UUID:
    from aos.services.runs import submit_run
    from aos.tasks.publisher import CeleryPublisher

    return submit_run(ctx, plan, CeleryPublisher(), **kw)


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _run(run_id: uuid.UUID) -> Run:
    with session_scope() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def _capped(ctx, cap: int | None):
    with session_scope() as s:
        set_max_running_runs(s, s.get(Tenant, ctx.tenant_id), cap)
    return replace(ctx, max_running_runs=cap)


def _enqueues(run_id: uuid.UUID) -> int:
    with session_scope() as s:
        return len(s.scalars(select(OutboxMessage.id).where(
            OutboxMessage.topic == "run.enqueue", OutboxMessage.payload["run_id"].astext == str(run_id))).all())


def _arrived(gate: Gate, *labels: str) -> bool:
    return set(labels) <= set(gate.arrived)


def test_runs_over_the_tenants_cap_wait_queued_and_start_in_submission_order(worker, tenant, gate):
    ctx = _capped(tenant[0], 1)
    runs = {who: _submit(ctx, _plan(gate.url, who)) for who in ("a", "b", "c")}
    _wait(lambda: _arrived(gate, "a"), 30, "run a to start")
    time.sleep(1.0)  # time enough for a worker to start b or c if it wrongly could
    assert gate.arrived == ["a"]
    for who in ("b", "c"):
        run = _run(runs[who])
        # waiting, not refused: queued, no step message anywhere (no enqueue row at all)
        assert run.status == "queued" and run.waiting_since is not None, (who, run.status)
        assert _enqueues(runs[who]) == 0
    gate.release("a")
    _wait(lambda: _arrived(gate, "b"), 30, "run b to get a's slot")
    time.sleep(0.5)
    assert gate.arrived == ["a", "b"], "c started before b finished, or out of order"
    gate.release("b")
    _wait(lambda: _arrived(gate, "c"), 30, "run c to get b's slot")
    gate.release("c")
    for who, run_id in runs.items():
        assert wait_for_run(run_id, timeout=30).status == "succeeded", (who, worker.tail())
    assert gate.arrived == ["a", "b", "c"]


def test_a_workflows_concurrency_applies_per_key_of_the_inputs(worker, tenant, gate):
    from aos.services.workflows import run_workflow, save_workflow
    from aos.tasks.publisher import CeleryPublisher

    ctx = tenant[0]
    plan = _plan(gate.url, "${inputs.customer}-${inputs.n}", name="per-customer", inputs={"customer": "", "n": 0},
                 concurrency={"limit": 1, "key": "inputs.customer"})
    save_workflow(ctx, "per-customer", plan)

    def start(customer: str, n: int) -> uuid.UUID:
        return run_workflow(ctx, "per-customer", CeleryPublisher(), inputs={"customer": customer, "n": n})

    a1, a2, b1 = start("acme", 1), start("acme", 2), start("bolt", 1)
    _wait(lambda: _arrived(gate, "acme-1", "bolt-1"), 30, "one run per customer to start")
    time.sleep(1.0)
    assert "acme-2" not in gate.arrived  # acme's one slot is taken; bolt's run did not wait behind it
    assert _run(a2).waiting_since is not None
    gate.release("acme-1")
    _wait(lambda: _arrived(gate, "acme-2"), 30, "acme's second run")
    gate.release_all()
    for run_id in (a1, a2, b1):
        assert wait_for_run(run_id, timeout=30).status == "succeeded", worker.tail()


def test_an_agents_concurrency_limits_its_runs(worker, tenant, gate):
    from aos.services.agents import create_agent

    ctx = tenant[0]
    agent = create_agent(ctx, f"capped-{uuid.uuid4().hex[:6]}", {"concurrency": {"limit": 1}})
    aid = uuid.UUID(agent["id"])
    runs = [_submit(ctx, _plan(gate.url, f"r{i}", name=f"p{i}"), agent_id=aid) for i in range(2)]
    other = _submit(ctx, _plan(gate.url, "free", name="no-agent"))  # not the agent's: not limited by it
    # (the session's worker has two processes: the agent's first run and the free one fill them)
    _wait(lambda: _arrived(gate, "r0", "free"), 30, "the agent's first run and the free one")
    time.sleep(0.5)
    assert "r1" not in gate.arrived and _run(runs[1]).waiting_since is not None
    gate.release("free")
    time.sleep(1.0)
    assert "r1" not in gate.arrived  # a free worker process is not a free slot of the agent
    gate.release("r0")
    _wait(lambda: _arrived(gate, "r1"), 30, "the agent's second run")
    gate.release_all()
    for run_id in (*runs, other):
        assert wait_for_run(run_id, timeout=30).status == "succeeded", worker.tail()


def test_cancelling_a_run_gives_its_slot_to_the_next_and_a_cancelled_waiting_run_never_starts(worker, tenant, gate):
    from aos.services.runs import cancel_run
    from aos.tasks.publisher import CeleryPublisher

    ctx = _capped(tenant[0], 1)
    first, second, third = (_submit(ctx, _plan(gate.url, who)) for who in ("first", "second", "third"))
    _wait(lambda: _arrived(gate, "first"), 30, "the first run")
    cancel_run(ctx, second, CeleryPublisher())  # waiting: cancelled without ever starting
    cancel_run(ctx, first, CeleryPublisher())   # running: its slot goes to the third, at once
    _wait(lambda: _arrived(gate, "third"), 30, "the third run to get the cancelled run's slot")
    gate.release_all()
    assert wait_for_run(third, timeout=30).status == "succeeded", worker.tail()
    assert "second" not in gate.arrived and _run(second).status == "cancelled"
    assert _run(second).waiting_since is None


def test_a_resumed_run_waits_for_a_slot_behind_the_runs_already_waiting(worker, tenant, gate):
    from aos.services.runs import resume_run
    from aos.tasks.publisher import CeleryPublisher

    ctx = _capped(tenant[0], 1)
    missing = gate.url.replace("/hold", "/missing")  # a 404: the run fails at once (not retryable)
    failing = _submit(ctx, {"name": "fails", "steps": [
        {"id": "bad", "skill": "http.request", "args": {"method": "GET", "url": missing}}]})
    assert wait_for_run(failing, timeout=30).status == "failed", worker.tail()
    holder = _submit(ctx, _plan(gate.url, "holder"))
    _wait(lambda: _arrived(gate, "holder"), 30, "the holder")
    waiter = _submit(ctx, _plan(gate.url, "waiter"))
    resume_run(ctx, failing, CeleryPublisher())
    resumed = _run(failing)
    assert resumed.status == "queued" and resumed.waiting_since is not None
    gate.release("holder")
    _wait(lambda: _arrived(gate, "waiter"), 30, "the run that waited first")
    assert _run(failing).waiting_since is not None  # still behind the waiter
    gate.release("waiter")
    assert wait_for_run(failing, timeout=30).status == "failed"  # it ran again (and failed the same way)
    assert [wait_for_run(r, timeout=30).status for r in (holder, waiter)] == ["succeeded", "succeeded"]


def test_a_worker_killed_while_holding_a_slot_leaks_nothing(worker, tenant, gate):
    """SIGKILL the pool process running the only slot's run: the message is redelivered (acks_late),
    the run finishes, its slot goes to the waiting run, and afterwards the tenant holds no slot."""
    ctx = _capped(tenant[0], 1)
    held = _submit(ctx, _plan(gate.url, "held"))
    waiting = _submit(ctx, _plan(gate.url, "waiting"))
    _wait(lambda: _arrived(gate, "held"), 30, "the held run's request")
    owner = _wait(lambda: _run(held).lease_owner, 10, "the held run's lease")
    pid = pid_of(owner)
    assert pid in worker.child_pids(), (pid, worker.child_pids())
    os.kill(pid, signal.SIGKILL)
    # the redelivery takes the dead delivery's attempt over once its lease (30 + 3 + 1 s) expires
    _wait(lambda: gate.arrived.count("held") >= 2, 60, "the held run's redelivery")
    assert "waiting" not in gate.arrived  # the slot stayed taken while its run was in doubt
    gate.release("held")
    assert wait_for_run(held, timeout=30).status == "succeeded", worker.tail()
    _wait(lambda: _arrived(gate, "waiting"), 30, "the waiting run to get the freed slot")
    gate.release("waiting")
    assert wait_for_run(waiting, timeout=30).status == "succeeded", worker.tail()
    later = _submit(ctx, _plan(gate.url, "later"))
    _wait(lambda: _arrived(gate, "later"), 30, "a later run to start at once: no slot leaked")
    gate.release("later")
    assert wait_for_run(later, timeout=30).status == "succeeded"


@pytest.mark.parametrize("concurrency, path", [
    ({"limit": 0}, "$.concurrency.limit"),
    ({"limit": 2, "key": "steps.x.output"}, "$.concurrency.key"),
    ({"limit": 2, "key": "inputs.["}, "$.concurrency.key"),
    ({"limit": 2, "per": "x"}, "$.concurrency.per"),
    ("two", "$.concurrency"),
])
def test_a_malformed_concurrency_is_refused_with_its_path(aos_env, tenant, concurrency, path):
    ctx = tenant[0]
    with pytest.raises(AosError) as err:
        _submit(ctx, _plan("http://127.0.0.1:9/", "x", concurrency=concurrency))
    assert path in [p["path"] for p in err.value.problems]


def test_a_malformed_concurrency_is_a_problem_over_http(client, tenant):
    _, key = tenant
    resp = client.post("/api/v1/runs", headers={"Authorization": f"Bearer {key}"},
                       json={"plan": _plan("http://127.0.0.1:9/", "x", concurrency={"limit": -1})})
    assert resp.status_code == 422, resp.get_json()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.get_json()["code"] == "PLAN_INVALID"


@pytest.mark.parametrize("concurrency, path", [
    ({"limit": 0}, "$.capabilities.concurrency.limit"),
    ({"limit": 1, "key": "inputsX"}, "$.capabilities.concurrency.key"),
    ({"limit": 1, "key": "inputs.["}, "$.capabilities.concurrency.key"),
])
def test_an_agents_malformed_concurrency_is_refused_over_http(client, tenant, concurrency, path):
    _, key = tenant
    resp = client.post("/api/v1/agents", headers={"Authorization": f"Bearer {key}"},
                       json={"name": f"a-{uuid.uuid4().hex[:6]}", "capabilities": {"concurrency": concurrency}})
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert body["code"] == "VALIDATION_ERROR"
    assert any(p["path"] == path for p in body.get("problems", [])) or path in body.get("detail", ""), body
