"""Flower (`aos flower`) against a real worker: a run's step tasks show up in Flower's HTTP API."""

from __future__ import annotations

import time

import httpx

from aos.services.runs import submit_run
from tests.ops.conftest import AosProcess, QueuePublisher, free_port
from tests.support.worker import wait_for_run

PLAN = {"name": "ops-flower", "steps": [
    {"id": "a", "skill": "json.transform", "args": {"input": {"v": [1, 2, 3]}, "expr": "v"}},
    {"id": "b", "skill": "json.transform", "args": {"input": {"$ref": "steps.a.output"}, "expr": "length(@)"}},
]}
# step b fails at run time (abs() of a list): a failed step must show as FAILURE, not SUCCESS
FAILING = {"name": "ops-flower-failing", "steps": [
    PLAN["steps"][0],
    {"id": "b", "skill": "json.transform", "args": {"input": {"$ref": "steps.a.output"}, "expr": "abs(@)"}},
]}
AUTH = ("ops", "flower-test-password")


def test_flower_shows_the_steps_of_a_run(aos_env, metrics_worker, tenant, tmp_path):
    ctx, _ = tenant
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**aos_env, "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    flower = AosProcess(["flower", "--port", str(port)], env, tmp_path / "flower.log")

    def workers_seen_through_events() -> bool:
        # /workers?json=1 lists the workers Flower knows from their events (heartbeats): once one is
        # there, Flower's event receiver is live and a task published now will be seen.
        res = httpx.get(f"{base}/workers?json=1", auth=AUTH, timeout=5)
        return res.status_code == 200 and bool(res.json()["data"])

    flower.start(workers_seen_through_events, timeout=35)
    try:
        assert httpx.get(f"{base}/api/tasks", timeout=5).status_code == 401  # the API needs the credentials
        run_id = str(submit_run(ctx, PLAN, QueuePublisher(metrics_worker.queue)))
        assert wait_for_run(run_id, timeout=30).status == "succeeded"
        deadline = time.monotonic() + 20
        while True:
            tasks = httpx.get(f"{base}/api/tasks", params={"limit": 1000}, auth=AUTH, timeout=5).json()
            ours = {tid: t for tid, t in tasks.items() if tid.startswith(f"{run_id}:")}
            if len(ours) == 2 and all(t["state"] == "SUCCESS" for t in ours.values()):
                break
            assert time.monotonic() < deadline, f"Flower saw {ours} of run {run_id}\n{flower.tail()}"
            time.sleep(0.3)
        assert {t["name"] for t in ours.values()} == {"aos.steps.execute"}
        assert sorted(tid.split(":")[1] for tid in ours) == ["0", "1"]  # ids are run:step:generation
        assert all(t["worker"] for t in ours.values())

        failing_id = str(submit_run(ctx, FAILING, QueuePublisher(metrics_worker.queue)))
        run = wait_for_run(failing_id, timeout=30)
        assert run.status == "failed", (run.error_code, run.error_message)
        deadline = time.monotonic() + 20
        while True:
            tasks = httpx.get(f"{base}/api/tasks", params={"limit": 1000}, auth=AUTH, timeout=5).json()
            states = {tid.split(":")[1]: t["state"] for tid, t in tasks.items() if tid.startswith(f"{failing_id}:")}
            if states == {"0": "SUCCESS", "1": "FAILURE"}:
                break
            assert time.monotonic() < deadline, f"Flower saw {states} for the failing run\n{flower.tail()}"
            time.sleep(0.3)
        failed = next(t for tid, t in tasks.items() if tid.startswith(f"{failing_id}:1"))
        assert run.error_code in (failed.get("exception") or ""), failed  # Flower shows why
    finally:
        flower.stop()
