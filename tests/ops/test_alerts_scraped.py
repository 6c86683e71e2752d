"""The alert rules against a real scrape: Prometheus (Debian's `prometheus`, the package that brings promtool)
scrapes a real `aos api` and `aos worker`, and every alert of ops/prometheus/rules/aos.rules.yml must reach
pending from the series as Prometheus stores them.

Hand-written series (aos.rules.test.yml) cannot catch a label that the scrape itself changes: a metric label
called `job` is renamed `exported_job` by Prometheus, and a rule on it never matches. Here the labels are
whatever the exposition and the scrape make of them. The conditions are real: failing and slow steps run on
the worker, a step exhausts its retries into a dead letter, targets that do not answer, an API whose
database is unreachable. Two states that only time makes (a lease expired ten minutes ago, an outbox row
pending for ten minutes) are written into Postgres with their past timestamps. `for:` durations are minutes:
here an alert counts once pending; aos.rules.test.yml checks the durations.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import delete, select

from aos.db.models import DeadLetter, DistributedLock, OutboxMessage
from aos.db.session import session_scope
from aos.services.runs import submit_run
from tests.ops.conftest import ROOT, AosProcess, QueuePublisher, free_port
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

RULES = ROOT / "ops" / "prometheus" / "rules" / "aos.rules.yml"
STALE_LOCK = "aos.runs.reap"
FAILING = {"name": "alerts-fail", "steps": [
    {"id": "check", "skill": "json.validate",
     "args": {"input": {"n": "three"}, "raise_on_invalid": True,
              "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}]}


def _http_plan(url: str, *, timeout_s: float = 10, attempts: int = 1) -> dict:
    return {"name": "alerts-http", "steps": [{"id": "call", "skill": "http.request", "timeout_s": timeout_s,
                                              "args": {"method": "GET", "url": url},
                                              "retry": {"max_attempts": attempts}}]}


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("the Prometheus server is not installed: run `make promtool` (as root: apt-get install "
                    "prometheus, the package that brings promtool)")
    return path


class Prometheus:
    def __init__(self, binary: str, tmp: Path, jobs: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            # 2 s: the API reads the deployment gauges from Postgres at each scrape, slower on a loaded machine
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            # as ops/prometheus/prometheus.yml, with static targets instead of DNS discovery
            "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": t}]}
                               for job, t in jobs.items()],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 — closed in stop()
        self.log_path = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict]:
        res = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert res["status"] == "success", res
        return res["data"]["result"]

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def deployment_in_trouble(tenant):
    """A lease whose leader vanished ten minutes ago and an outbox row pending for ten minutes, put back
    afterwards as they were."""
    ctx, _ = tenant
    now = datetime.now(UTC)
    with session_scope() as s:
        saved = s.scalar(select(DistributedLock).where(DistributedLock.name == STALE_LOCK))
        before = None if saved is None else (saved.holder, saved.fencing_token, saved.expires_at)
        if saved is None:
            s.add(DistributedLock(name=STALE_LOCK, holder="gone:1", fencing_token=1,
                                  expires_at=now - timedelta(minutes=10)))
        else:
            saved.expires_at = now - timedelta(minutes=10)
        msg = OutboxMessage(tenant_id=ctx.tenant_id, topic="budget.warning", payload={"probe": True},
                            created_at=now - timedelta(minutes=10), next_attempt_at=now + timedelta(hours=1))
        s.add(msg)
        s.flush()
        msg_id = msg.id
    yield
    with session_scope() as s:
        s.execute(delete(OutboxMessage).where(OutboxMessage.id == msg_id))
        row = s.scalar(select(DistributedLock).where(DistributedLock.name == STALE_LOCK))
        if before is None:
            s.delete(row)
        else:
            row.holder, row.fencing_token, row.expires_at = before
        s.execute(delete(DeadLetter).where(DeadLetter.tenant_id == ctx.tenant_id))


def test_every_alert_can_fire_from_a_real_scrape(aos_env, tenant, metrics_worker, prometheus_bin, tmp_path,
                                                 deployment_in_trouble):
    ctx, _ = tenant
    pub = QueuePublisher(metrics_worker.queue)
    apis = []
    prom = None

    def slow(_req):
        return Reply(json={"ok": True}, delay_s=31)  # one attempt above the 30 s p95 threshold

    try:
        with serve_http({"GET /fast": Reply(json={"ok": True}), "GET /slow": slow,
                         "GET /down": Reply(status=503)}) as srv:
            # the series the rules need exist before Prometheus first looks (a counter first seen with a value
            # has no rate yet)
            for plan in (_http_plan(srv.url("/fast")), FAILING):
                wait_for_run(submit_run(ctx, plan, pub), timeout=60)
            slow_run = submit_run(ctx, _http_plan(srv.url("/slow"), timeout_s=60), pub)

            for name, db in (("api", aos_env["AOS_DATABASE_URL"]),
                             ("api-nodb", f"postgresql+psycopg://aos@127.0.0.1:{free_port()}/aos")):
                bind = f"127.0.0.1:{free_port()}"
                env = {**aos_env, "AOS_DATABASE_URL": db, "AOS_METRICS_DIR": str(tmp_path / name),
                       "AOS_DATA_DIR": str(tmp_path / name)}
                proc = AosProcess(["api", "--bind", bind, "--workers", "1"], env, tmp_path / f"{name}.log")
                proc.bind = bind
                apis.append(proc.start(lambda b=bind: httpx.get(f"http://{b}/healthz", timeout=2).is_success))
            api, api_nodb = apis
            dead_api, dead_worker = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            prom = Prometheus(prometheus_bin, tmp_path, {
                "aos-api": [api.bind, api_nodb.bind, dead_api],
                "aos-worker": [f"127.0.0.1:{metrics_worker.port}", dead_worker]})
            _wait(lambda: len(prom.query('up{job=~"aos-.*"}')) == 5 and prom.query("aos_steps_total"),
                  "Prometheus has not scraped every target", prom, timeout=90)

            # what happens while Prometheus watches: a step dead-letters, steps keep failing
            dead = submit_run(ctx, _http_plan(srv.url("/down")), pub)
            for _ in range(12):
                wait_for_run(submit_run(ctx, FAILING, pub), timeout=60)
            wait_for_run(dead, timeout=60)
            with session_scope() as s:
                assert s.scalar(select(DeadLetter.kind).where(DeadLetter.tenant_id == ctx.tenant_id)) == "step"
            assert wait_for_run(slow_run, timeout=90).status == "succeeded"

        # The lock series as stored: our `lock` label, Prometheus's own `job`, nothing renamed.
        [stale] = prom.query(f'aos_lock_expiry_timestamp_seconds{{lock="{STALE_LOCK}", instance="{api.bind}"}}')
        assert stale["metric"]["job"] == "aos-api"
        renamed = {k for r in prom.query('{__name__=~"aos_.+"}') for k in r["metric"] if k.startswith("exported_")}
        assert not renamed, f"the scrape renamed labels that clash with Prometheus's own: {renamed}"

        expected = {
            "AosOutboxOldestPendingHigh": {},
            "AosDeadLettersGrowing": {"kind": "step"},
            "AosNoLockLeader": {"lock": STALE_LOCK},
            "AosStepFailureRatioHigh": {"skill": "json.validate"},
            "AosStepLatencyP95High": {"skill": "http.request"},
            "AosWorkerMetricsDown": {"instance": dead_worker},
            "AosApiMetricsDown": {"instance": dead_api},
            "AosDatabaseUnreachable": {"instance": api_nodb.bind},
        }
        rules = {r["alert"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
        assert rules == set(expected), "a new alert needs its real-scrape scenario here"

        def missing() -> list[str]:
            active = prom.alerts()
            return [name for name, labels in expected.items()
                    if not any(a["labels"]["alertname"] == name and a["state"] in ("pending", "firing")
                               and all(a["labels"].get(k) == v for k, v in labels.items()) for a in active)]

        _wait(lambda: not missing(), lambda: f"alerts that never became pending: {missing()}", prom, timeout=120)
        # and the summary names the lock: the annotation reads the same label
        [leader] = [a for a in prom.alerts() if a["labels"]["alertname"] == "AosNoLockLeader"
                    and a["labels"].get("lock") == STALE_LOCK]
        assert leader["annotations"]["summary"].startswith(f"No leader has run {STALE_LOCK} for ")
    finally:
        if prom is not None:
            prom.stop()
        for proc in apis:
            proc.stop()


def _wait(cond, what, prom: Prometheus, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"{message}\nPrometheus log:\n{prom.log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def test_prometheus_config_keeps_our_labels_apart_from_its_own():
    """honor_labels would let an exposed `job` or `instance` overwrite the target's: never set it."""
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    assert not any(job.get("honor_labels") for job in config["scrape_configs"])
