"""Prometheus metrics of the API and the workers, scraped from real processes and checked by promtool.

Multiprocess mode (aos.observability): `aos api` (gunicorn, 2 workers) and `aos worker` (prefork, 2
children) each merge their processes' files into one endpoint; stale files go at start, a dead
child's live gauges go when it dies; every label value is from its closed set in aos.metrics.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select

from aos.db.models import Checkpoint, DeadLetter, DistributedLock, OutboxMessage, Run
from aos.db.session import reset_engine, session_scope
from aos.observability import group_name
from aos.services.runs import submit_run
from tests.ops.conftest import (
    AosProcess,
    QueuePublisher,
    assert_closed_labels,
    free_port,
    promtool_check_metrics,
    sample_value,
    write_counter,
)
from tests.support.http_server import Reply, serve_http
from tests.support.worker import pid_of, wait_for_run

TWO_STEPS = {"name": "ops-metrics", "steps": [
    {"id": "a", "skill": "json.transform", "args": {"input": {"x": {"y": 1}}, "expr": "x"}},
    {"id": "b", "skill": "json.transform", "args": {"input": {"$ref": "steps.a.output"}, "expr": "y"}},
]}
FAILING = {"name": "ops-metrics-fail", "steps": [
    {"id": "check", "skill": "json.validate",
     "args": {"input": {"n": "three"}, "raise_on_invalid": True,
              "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
]}


def _plan_with_http(url: str, *, timeout_s: float = 10, retry: dict | None = None) -> dict:
    step = {"id": "call", "skill": "http.request", "args": {"method": "GET", "url": url}, "timeout_s": timeout_s}
    if retry:
        step["retry"] = retry
    return {"name": "ops-metrics-http", "steps": [step]}


def _write_live_gauge(path, pid: int, value: float) -> None:
    """A live-gauge file as prometheus_client writes it, for process ``pid``."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    d = MmapedDict(str(path / f"gauge_livesum_{pid}.db"))
    key = mmap_key("aos_steps_in_progress", "aos_steps_in_progress", ["skill"], ["json.transform"],
                   "Step attempts executing a skill right now, by skill.")
    d.write_value(key, value, 0.0)
    d.close()


# --- the API's /metrics (in-process Flask app: single-process mode) ---------------------------
@pytest.fixture
def deployment_rows(tenant):
    """An old pending webhook, an open task dead letter and a held lease, removed afterwards."""
    ctx, _ = tenant
    now = datetime.now(UTC)
    with session_scope() as s:
        s.execute(delete(DistributedLock).where(DistributedLock.name == "aos.views.refresh"))
        msg = OutboxMessage(tenant_id=ctx.tenant_id, topic="budget.warning", payload={"probe": True},
                            created_at=now - timedelta(hours=1), next_attempt_at=now + timedelta(hours=1))
        dl = DeadLetter(tenant_id=ctx.tenant_id, kind="task", payload={"probe": True}, error_code="WORKER_LOST",
                        error_message="probe", attempts=1)
        lock = DistributedLock(name="aos.views.refresh", holder="probe:1", fencing_token=7,
                               expires_at=now + timedelta(seconds=60))
        s.add_all([msg, dl, lock])
        s.flush()
        ids = (msg.id, dl.id)
    yield
    with session_scope() as s:
        s.execute(delete(OutboxMessage).where(OutboxMessage.id == ids[0]))
        s.execute(delete(DeadLetter).where(DeadLetter.id == ids[1]))
        s.execute(delete(DistributedLock).where(DistributedLock.name == "aos.views.refresh"))


def test_api_metrics_pass_promtool_and_read_the_deployment_from_postgres(client, tenant, worker, promtool,
                                                                          deployment_rows):
    _, key = tenant
    before = sample_value(client.get("/metrics").get_data(as_text=True), "aos_runs_submitted_total") or 0
    res = client.post("/api/v1/runs", json={"plan": TWO_STEPS}, headers={"Authorization": f"Bearer {key}"})
    assert res.status_code == 201, res.get_json()

    res = client.get("/metrics")
    assert res.status_code == 200
    assert res.content_type.startswith("text/plain; version=0.0.4")
    text = res.get_data(as_text=True)
    promtool_check_metrics(promtool, text)
    assert_closed_labels(text)
    assert sample_value(text, "aos_runs_submitted_total") == before + 1
    assert sample_value(text, "aos_database_up") == 1
    # the probe rows: at least one pending webhook an hour old, an open task dead letter, a held lease
    assert sample_value(text, "aos_outbox_pending_messages", topic="budget.warning") >= 1
    assert sample_value(text, "aos_outbox_oldest_pending_age_seconds", topic="budget.warning") >= 3590
    assert sample_value(text, "aos_dead_letters_open", kind="task") >= 1
    assert sample_value(text, "aos_lock_holders", lock="aos.views.refresh") == 1
    assert sample_value(text, "aos_lock_fencing_token", lock="aos.views.refresh") == 7
    expiry = sample_value(text, "aos_lock_expiry_timestamp_seconds", lock="aos.views.refresh")
    assert 30 < expiry - time.time() <= 61
    # every closed value is exported even at zero, so a dashboard never shows "no data" for a quiet topic
    for topic in ("run.enqueue", "run.succeeded", "run.failed", "budget.warning"):
        assert sample_value(text, "aos_outbox_pending_messages", topic=topic) is not None
    for status in ("queued", "running"):
        assert sample_value(text, "aos_runs_active", status=status) is not None


def test_api_metrics_speak_openmetrics_when_asked(client, promtool):
    res = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert res.status_code == 200
    assert res.content_type.startswith("application/openmetrics-text")
    assert res.get_data(as_text=True).rstrip().endswith("# EOF")


def test_api_metrics_token_when_set(client, settings_env):
    settings_env(AOS_METRICS_TOKEN="s3cret-token")
    res = client.get("/metrics")
    assert res.status_code == 401
    assert res.get_json()["code"] == "AUTH_INVALID"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and b"aos_database_up" in ok.data


def test_database_outage_is_a_gauge_not_a_failed_scrape(client, settings_env, promtool):
    port = free_port()  # nothing listens there
    settings_env(AOS_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere")
    reset_engine()
    try:
        res = client.get("/metrics")
    finally:
        reset_engine()  # settings_env restores the variables at teardown; the next use rebuilds the engine
    assert res.status_code == 200
    text = res.get_data(as_text=True)
    promtool_check_metrics(promtool, text)
    assert sample_value(text, "aos_database_up") == 0
    assert sample_value(text, "aos_runs_active") is None


# --- `aos api`: gunicorn workers merged, stale files removed at start, a dead worker's files removed ------
def test_gunicorn_api_merges_its_workers_and_cleans_up(aos_env, tenant, worker, promtool, tmp_path):
    _, key = tenant
    port = free_port()
    bind = f"127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    group = metrics_dir / group_name("api", bind)
    group.mkdir(parents=True)
    write_counter(group, 999_999_999, "aos_runs_submitted_total", 1000)  # a previous run's: must not count
    env = {**aos_env, "AOS_METRICS_DIR": str(metrics_dir), "AOS_DATA_DIR": str(tmp_path)}
    api = AosProcess(["api", "--bind", bind, "--workers", "2"], env, tmp_path / "api.log")
    base = f"http://{bind}"
    api.start(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, timeout=60)
    try:
        assert not (group / "counter_999999999.db").exists()
        res = httpx.post(f"{base}/api/v1/runs", json={"plan": TWO_STEPS},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert res.status_code == 201, res.text
        wait_for_run(res.json()["id"], timeout=60)

        # whichever worker answers the scrape, the merged view counts the one submission exactly once
        for _ in range(6):
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert sample_value(text, "aos_runs_submitted_total") == 1, text[:2000]
            assert sample_value(text, "aos_database_up") == 1
        promtool_check_metrics(promtool, text)
        assert_closed_labels(text)

        # a second API group may not take over (and wipe) this group's directory
        second = AosProcess(["api", "--bind", bind, "--workers", "1"], env, tmp_path / "api2.log")
        with pytest.raises(RuntimeError, match="in use by another process group"):
            second.start(lambda: False, timeout=20)
        assert second.proc.returncode == 2
        assert list(group.glob("counter_*.db")), "the running group's files were wiped"

        # a gunicorn worker dies: the master's child_exit hook removes its live gauges (no scrape needed)
        victim = api.children()[0]
        _write_live_gauge(group, victim, 5)
        assert sample_value(httpx.get(f"{base}/metrics", timeout=10).text,
                            "aos_steps_in_progress", skill="json.transform") == 5
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (group / f"gauge_livesum_{victim}.db").exists():
            assert time.monotonic() < deadline, "the dead worker's live gauge file is still there"
            time.sleep(0.1)
        assert not sample_value(httpx.get(f"{base}/metrics", timeout=10).text,
                                "aos_steps_in_progress", skill="json.transform")
    finally:
        api.stop()


# --- `aos worker`: the parent's endpoint shows its children's work --------------------------------
def test_worker_endpoint_counts_steps_runs_and_retries(metrics_worker, tenant, promtool):
    ctx, _ = tenant
    pub = QueuePublisher(metrics_worker.queue)
    before = metrics_worker.scrape()
    assert not (metrics_worker.group_dir / "counter_999999999.db").exists()
    assert sample_value(before, "aos_runs_submitted_total") == 0  # the stale file's 1000 is gone

    def delta(text: str, name: str, **labels: str) -> float:
        return (sample_value(text, name, **labels) or 0) - (sample_value(before, name, **labels) or 0)

    calls = {"n": 0}

    def flaky(_req):
        calls["n"] += 1
        return Reply(status=503) if calls["n"] == 1 else Reply(json={"ok": True})

    with serve_http({"GET /flaky": flaky}) as srv:
        ok = submit_run(ctx, TWO_STEPS, pub)
        bad = submit_run(ctx, FAILING, pub)
        retried = submit_run(ctx, _plan_with_http(srv.url("/flaky"),
                                                  retry={"max_attempts": 3, "backoff_s": 0.1, "backoff_max_s": 0.2}),
                             pub)
        assert wait_for_run(ok, timeout=60).status == "succeeded"
        assert wait_for_run(bad, timeout=60).status == "failed"
        assert wait_for_run(retried, timeout=60).status == "succeeded"
    with session_scope() as s:
        fail_code = s.scalar(select(Checkpoint.error_code).where(Checkpoint.run_id == bad))

    text = metrics_worker.scrape()
    promtool_check_metrics(promtool, text)
    assert_closed_labels(text)
    assert delta(text, "aos_steps_total", skill="json.transform", status="succeeded", code="none") == 2
    assert delta(text, "aos_step_duration_seconds_count", skill="json.transform") == 2
    assert delta(text, "aos_steps_total", skill="json.validate", status="failed", code=fail_code) == 1
    assert delta(text, "aos_steps_total", skill="http.request", status="retrying", code="HTTP_SERVICE_UNAVAILABLE") == 1
    assert delta(text, "aos_step_retries_total", skill="http.request", code="HTTP_SERVICE_UNAVAILABLE") == 1
    assert delta(text, "aos_steps_total", skill="http.request", status="succeeded", code="none") == 1
    assert delta(text, "aos_runs_finished_total", status="succeeded") == 2
    assert delta(text, "aos_runs_finished_total", status="failed") == 1
    assert not sample_value(text, "aos_steps_in_progress")


def test_killed_worker_child_loses_its_live_gauges(metrics_worker, tenant):
    """SIGKILL a child mid-step: no exit hook runs, the parent notices the dead pid at the next scrape."""
    ctx, _ = tenant
    release = threading.Event()

    def slow(_req):
        release.wait(20)
        return Reply(json={"ok": True})

    with serve_http({"GET /slow": slow}) as srv:
        run_id = submit_run(ctx, _plan_with_http(srv.url("/slow"), timeout_s=5), QueuePublisher(metrics_worker.queue))
        deadline = time.monotonic() + 30
        while sample_value(metrics_worker.scrape(), "aos_steps_in_progress", skill="http.request") != 1:
            assert time.monotonic() < deadline, "the step never showed as in progress"
            time.sleep(0.2)
        with session_scope() as s:  # the attempt in progress lives on its run row; its holder is the lease owner
            holder = s.scalar(select(Run.lease_owner).where(Run.id == run_id, Run.attempt_open))
        pid = pid_of(holder)
        assert pid in metrics_worker.process.children()
        live = metrics_worker.group_dir / f"gauge_livesum_{pid}.db"
        assert live.exists()
        os.kill(pid, signal.SIGKILL)
        release.set()
        # the step is redelivered to another child once the dead one's lease expires, and succeeds
        assert wait_for_run(run_id, timeout=60).status == "succeeded"
    text = metrics_worker.scrape()
    assert not live.exists(), "the killed child's live gauge file is still there"
    assert not sample_value(text, "aos_steps_in_progress"), "a dead child's step still counts as in progress"


def test_a_child_that_exits_removes_its_own_live_gauges(metrics_worker, tenant):
    """A pool child that exits normally (here: the pool shrinks) removes its files itself."""
    from aos.tasks.app import app

    ctx, _ = tenant
    # run steps until every child has touched a live gauge (each step runs in one of the two children)
    def with_files() -> set[int]:
        return {p for p in metrics_worker.process.children()
                if (metrics_worker.group_dir / f"gauge_livesum_{p}.db").exists()}

    for _ in range(10):
        runs = [submit_run(ctx, TWO_STEPS, QueuePublisher(metrics_worker.queue)) for _ in range(4)]
        for r in runs:
            wait_for_run(r, timeout=60)
        children = metrics_worker.process.children()
        if with_files() == set(children):
            break
    assert with_files() == set(children), "some child never ran a step"
    node = f"celery@{os.uname().nodename}"
    reply = app.control.pool_shrink(1, destination=[node], reply=True, timeout=5)
    assert reply, f"no reply from {node}"
    try:
        deadline = time.monotonic() + 20
        while set(metrics_worker.process.children()) >= set(children):
            assert time.monotonic() < deadline, "the pool did not shrink"
            time.sleep(0.1)
        gone = set(children) - set(metrics_worker.process.children())
        assert gone
        for pid in gone:  # no scrape in between: the child's own worker_process_shutdown did it
            assert not (metrics_worker.group_dir / f"gauge_livesum_{pid}.db").exists()
    finally:
        app.control.pool_grow(1, destination=[node], reply=True, timeout=5)


def test_worker_endpoint_honours_the_metrics_token(settings_env):
    """The worker's endpoint is the same WSGI app as the one `aos worker` serves, behind the same token."""
    from werkzeug.test import Client

    from aos.observability import metrics_wsgi_app

    settings_env(AOS_METRICS_TOKEN="w0rker-token")
    client = Client(metrics_wsgi_app())
    denied = client.get("/metrics")
    assert denied.status_code == 401 and "Bearer" in denied.headers["WWW-Authenticate"]
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer w0rker-token"})
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/plain")
    assert b"aos_database_up" not in ok.data  # the deployment gauges belong to the API only


def test_api_metrics_on_a_separate_bind_and_not_on_the_public_port(aos_env, tmp_path):
    """AOS_API_METRICS_PORT: the gunicorn master serves /metrics (with the deployment gauges) on its own port,
    behind the token when set, and the API's public port answers 404 for it."""
    port, metrics_port = free_port(), free_port()
    bind = f"127.0.0.1:{port}"
    env = {**aos_env, "AOS_METRICS_DIR": str(tmp_path / "metrics"), "AOS_DATA_DIR": str(tmp_path),
           "AOS_API_METRICS_PORT": str(metrics_port), "AOS_METRICS_TOKEN": "separate-bind-token"}
    api = AosProcess(["api", "--bind", bind, "--workers", "1"], env, tmp_path / "api.log")
    api.start(lambda: httpx.get(f"http://{bind}/healthz", timeout=2).status_code == 200, timeout=60)
    try:
        public = httpx.get(f"http://{bind}/metrics", headers={"Authorization": "Bearer separate-bind-token"},
                           timeout=10)
        assert public.status_code == 404 and public.json()["code"] == "NOT_FOUND"
        private = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(private, timeout=10).status_code == 401
        text = httpx.get(private, headers={"Authorization": "Bearer separate-bind-token"}, timeout=10).text
        assert sample_value(text, "aos_database_up") == 1
    finally:
        api.stop()
