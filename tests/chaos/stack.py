"""A whole AOS deployment of a chaos test's own, made of real processes on private servers.

    private Redis (PrivateRedis) ─┐
    Postgres (a fresh database,   ├─ aos db upgrade, aos tenants create, aos keys create   (the real CLI)
      or a PrivatePostgres)      ─┘
    aos api      gunicorn, 2 workers             ← the test POSTs its runs here
    aos beat     celery beat: outbox drain, reaper and the other singleton jobs
    aos worker   -Q aos.default: the worker that runs beat's jobs
    2 × WorkerProcess (prefork, 2 processes each) on the step queue ← the ones the test kills

Every process gets the same AOS_* environment, built here from scratch (nothing of the test
session's own servers leaks in), so stopping this stack's broker or database hurts no other test.
Assertions read the database through a NullPool engine: a fresh connection per query survives a
Postgres restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from aos.db.session import sqlalchemy_url
from aos.embedded import free_port
from tests.support.broker import PrivateRedis
from tests.support.postgres import PrivatePostgres
from tests.support.worker import WorkerProcess

FINAL = ("succeeded", "failed", "cancelled", "dead_lettered")
AOS = str(Path(sys.executable).with_name("aos"))


def chaos_env(db_url: str, broker_url: str, data_dir: Path, queue: str) -> dict[str, str]:
    """The AOS_* settings of every process of the stack. Short intervals so recovery fits a test:
    leases of 5 + 3 + 1 s for HTTP steps, the reaper every second with a 30 s grace. The grace is the
    longest a run may wait in a busy queue: beyond it the reaper re-publishes runs that are only waiting
    (test_reaper.py), which on a loaded machine multiplies the work of these tests."""
    return {
        "AOS_DATABASE_URL": db_url,
        "AOS_BROKER_URL": broker_url,
        "AOS_STEP_QUEUE": queue,
        "AOS_DATA_DIR": str(data_dir),
        "AOS_SECRET_KEY": "chaos-secret",
        "AOS_ENV": "test",
        "AOS_HTTP_ALLOW_HOSTS": "127.0.0.1,localhost",
        "AOS_LLM_PROVIDER": "offline",
        "AOS_MAX_COUNTDOWN_S": "5",
        # the workload's 503s are its plans', not an outage: breakers have their own test (test_circuit.py)
        "AOS_CIRCUIT_FAILURES": "0",
        "AOS_HARD_TIMEOUT_GRACE_S": "3",
        "AOS_LEASE_GRACE_S": "1",
        "AOS_OUTBOX_INTERVAL_S": "0.5",
        "AOS_REAPER_INTERVAL_S": "1",
        "AOS_REAPER_GRACE_S": "30",
        "AOS_DB_POOL_SIZE": "3",
        # webhooks: fast retries, and a short lease for a row whose drainer lost the database mid-delivery
        "AOS_OUTBOX_BACKOFF_S": "0.5",
        "AOS_OUTBOX_BACKOFF_MAX_S": "3",
        "AOS_WEBHOOK_TIMEOUT_S": "2",
        "AOS_OUTBOX_LEASE_S": "5",
    }


def _base_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AOS_", "PROMETHEUS_MULTIPROC"))}


class Service:
    """One long-running process started through the `aos` CLI; ready when its log shows ``ready``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, ready: str,
                 probe: Callable[[], bool] | None = None) -> None:
        self.name, self.argv, self.env, self.ready, self.probe = name, argv, env, ready, probe
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if self.ready.encode() in self.log_path.read_bytes() and (self.probe is None or self.probe()):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout}s: {self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"


class ChaosStack:
    def __init__(self, tmp: Path, db_url: str, broker: PrivateRedis, postgres: PrivatePostgres | None = None,
                 webhook_url: str | None = None) -> None:
        self.tmp, self.db_url, self.broker, self.postgres = tmp, db_url, broker, postgres
        self.webhook_url = webhook_url
        self.webhook_secret = ""
        self.log_dir = tmp / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**_base_environ(),
                    **chaos_env(db_url, broker.url, tmp / "data", f"aos.steps.chaos.{uuid.uuid4().hex[:6]}")}
        self.engine: Engine = create_engine(sqlalchemy_url(db_url), poolclass=NullPool,
                                            connect_args={"connect_timeout": 3})
        self.api_port = free_port()
        self.api: Service | None = None
        self.beat: Service | None = None
        self.ops: Service | None = None
        self.workers: list[WorkerProcess] = []
        self.key = ""
        self.tenant_id = ""
        self._worker_count = 0

    # ------------------------------------------------------------------ set-up and tear-down

    def aos(self, *args: str, timeout: float = 120) -> str:
        """Run the real `aos` CLI against this stack; its stdout."""
        out = subprocess.run([AOS, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"aos {' '.join(args)} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
        return out.stdout

    def provision(self) -> None:
        """A tenant, an API key and the tenant's webhook endpoint, through the CLI an operator uses (after
        `aos db upgrade`)."""
        tenant = json.loads(self.aos("tenants", "create", "chaos", "--json"))
        self.tenant_id = tenant["id"]
        key = json.loads(self.aos("keys", "create", "--tenant", "chaos", "--scope", "runs:read",
                                  "--scope", "runs:write", "--scope", "admin", "--json"))
        self.key = key["key"]
        if self.webhook_url:
            hook = json.loads(self.aos("tenants", "webhook", "set", "chaos", "--url", self.webhook_url, "--json"))
            self.webhook_secret = hook["secret"]

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, workers: int = 2) -> ChaosStack:
        """Migrate, then provision the tenant while every process starts."""
        self.aos("db", "upgrade")
        self.api = Service("api", [AOS, "api", "-b", f"127.0.0.1:{self.api_port}", "-w", "2"], self.env,
                           self.log_dir, "Booting worker", probe=self._api_up)
        self.beat = Service("beat", [AOS, "beat", "--loglevel", "INFO"], self.env, self.log_dir, "beat: Starting")
        self.ops = Service("ops", [sys.executable, "-m", "celery", "-A", "aos.tasks.app", "worker", "-P", "prefork",
                                   "-c", "2", "-Q", "aos.default", "-n", f"ops-{uuid.uuid4().hex[:6]}@%h",
                                   "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
                           self.env, self.log_dir, "ready.")
        new_workers = [self._new_worker() for _ in range(workers)]
        starters: list[Callable[[], Any]] = [self.provision, self.api.start, self.beat.start, self.ops.start,
                                             *(w.start for w in new_workers)]
        _in_parallel(starters)
        return self

    def _new_worker(self) -> WorkerProcess:
        self._worker_count += 1
        w = WorkerProcess(self.env, self.log_dir, name=f"step{self._worker_count}-{uuid.uuid4().hex[:4]}",
                          concurrency=2)
        self.workers.append(w)
        return w

    def start_worker(self) -> WorkerProcess:
        w = self._new_worker()
        w.start()
        return w

    def stop(self) -> None:
        """Tear down at the end of a test: nothing left matters, so no warm shutdown is waited for."""
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait(timeout=10)
            w.stop()  # closes its log
        _in_parallel([lambda svc=svc: svc.stop(grace=2) for svc in (self.api, self.beat, self.ops) if svc is not None],
                     raise_first=False)
        self.engine.dispose()

    # ------------------------------------------------------------------ the workload

    def submit(self, plans: Iterable[dict[str, Any]], threads: int = 4) -> list[str]:
        """POST every plan to the API (a few at a time); the run ids, in order. Every POST must get 201."""
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.api_url, headers=headers, timeout=30) as client:
            def post(plan: dict[str, Any]) -> str:
                resp = client.post("/api/v1/runs", json={"plan": plan})
                assert resp.status_code == 201, (resp.status_code, resp.text[:500])
                return resp.json()["id"]

            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(post, plans))

    def submit_in_background(self, plans: list[dict[str, Any]]) -> Future[list[str]]:
        """``submit`` in a thread: the fault may land while runs are still being accepted."""
        pool = ThreadPoolExecutor(1)
        future = pool.submit(self.submit, plans)
        pool.shutdown(wait=False)
        return future

    # ------------------------------------------------------------------ reading the database

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def try_query(self, sql: str, **params: Any) -> list[Any] | None:
        """The rows, or None while the database is unreachable (during a Postgres restart)."""
        try:
            return self.query(sql, **params)
        except OperationalError:
            return None

    def status_counts(self) -> dict[str, int]:
        rows = self.try_query("SELECT status, count(*) FROM runs WHERE tenant_id = :t GROUP BY status",
                              t=self.tenant_id)
        return dict(rows or [])  # type: ignore[arg-type]

    def final_count(self) -> int:
        return sum(n for st, n in self.status_counts().items() if st in FINAL)

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; runs: "
                                     f"{self.status_counts()}")
            time.sleep(interval)

    def http_steps_in_flight(self) -> list[tuple[str, str]]:
        """(run id, worker) of HTTP steps being executed right now."""
        # an attempt in progress lives on its run row (its checkpoint is written when it ends)
        rows = self.try_query(
            "SELECT r.id::text, r.lease_owner FROM runs r WHERE r.tenant_id = :t AND r.attempt_open "
            "AND r.lease_owner IS NOT NULL "
            "AND r.skill_versions->>(r.plan->'steps'->r.next_step->>'id') LIKE 'http.request%'", t=self.tenant_id)
        return [(r[0], r[1]) for r in rows or []]

    def logs(self, n: int = 1500) -> str:
        parts = [f"--- {w.name}\n{w.tail(n)}" for w in self.workers]
        parts += [f"--- {s.name}\n{s.tail(n)}" for s in (self.api, self.beat, self.ops) if s is not None]
        return "\n".join(parts)


def _in_parallel(calls: list[Callable[[], Any]], raise_first: bool = True) -> None:
    errors: list[BaseException] = []

    def run(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 — collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors and raise_first:
        raise errors[0]
