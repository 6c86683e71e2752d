"""Two real `celery beat` processes at once, a real worker, a private Redis: every singleton job and a user
schedule fire once per tick; when the leading beat is SIGKILLed the standby takes over and still nothing
fires twice.

Firings are counted in Postgres: each run of a singleton job takes its lease with a new holder, so the
lease's fencing token grows by one per firing; each firing of the user schedule is a run whose
``run.queued`` event names the tick (``scheduled_for``) it belongs to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from aos.db.models import Run, RunEvent, Workflow
from aos.db.session import session_scope
from aos.db.vocabulary import BEAT_LEASE
from aos.services.schedules import create_schedule, delete_schedule
from aos.services.workflows import save_workflow
from tests.support.broker import PrivateRedis

pytestmark = pytest.mark.slow

JOBS = ("aos.runs.reap", "aos.retention.run", "aos.schedules.fire", "aos.dlq.reconcile")
INTERVAL_S = 1.0
SCHEDULE_EVERY_S = 2
LEASE_TTL_S = 3.0


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.log.name} exited: {self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in {self.log.name} after {timeout}s: {self.text()[-3000:]}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def _tokens() -> dict[str, int]:
    with session_scope() as s:
        rows = s.execute(text("SELECT name, fencing_token FROM distributed_locks WHERE name = ANY(:n)"),
                         {"n": [*JOBS, BEAT_LEASE]}).all()
    return {name: int(tok) for name, tok in rows}


def _beat_holder_pid() -> int | None:
    with session_scope() as s:
        row = s.execute(text("SELECT holder FROM distributed_locks WHERE name = :n AND expires_at > now()"),
                        {"n": BEAT_LEASE}).first()
    return int(row[0].split(":")[2]) if row else None  # beat:<host>:<pid>:<nonce>


def _ticks_fired(schedule_id: str) -> Counter:
    with session_scope() as s:
        data = s.scalars(select(RunEvent.data).where(RunEvent.type == "run.queued",
                                                     RunEvent.data["schedule_id"].astext == schedule_id)).all()
    return Counter(d["scheduled_for"] for d in data)


def _sent(beat: Proc) -> int:
    return beat.text().count("Sending due task")


def _assert_once_per_tick(before: dict[str, int], after: dict[str, int], elapsed: float) -> None:
    ticks = elapsed / INTERVAL_S
    for job in JOBS:
        fired = after.get(job, 0) - before.get(job, 0)
        # one beat sends one message per interval; two beats without leader election would send twice as
        # many, and a job that ran for both would take its lease twice per tick
        assert 2 <= fired <= ticks + 2, (job, fired, round(elapsed, 1))


def test_two_beats_fire_each_singleton_job_and_user_schedule_once_per_tick(aos_env, tenant, tmp_path):
    ctx, _ = tenant
    broker = PrivateRedis(tmp_path / "redis").start()
    env = {**os.environ, **aos_env, "AOS_BROKER_URL": broker.url, "AOS_BEAT_LEASE_TTL_S": str(LEASE_TTL_S),
           "AOS_LOCK_TTL_S": "10", "AOS_OUTBOX_INTERVAL_S": str(INTERVAL_S), "AOS_REAPER_INTERVAL_S": str(INTERVAL_S),
           "AOS_RETENTION_INTERVAL_S": str(INTERVAL_S), "AOS_SCHEDULES_INTERVAL_S": str(INTERVAL_S),
           "AOS_DLQ_RECONCILE_INTERVAL_S": str(INTERVAL_S)}
    wf = f"tick-{uuid.uuid4().hex[:8]}"
    save_workflow(ctx, wf, {"inputs": {"n": 1}, "steps": [
        {"id": "s", "skill": "json.transform", "args": {"input": {"$ref": "inputs.n"}, "expr": "@"}}]})
    schedule = create_schedule(ctx, wf, f"* * * * * */{SCHEDULE_EVERY_S}")  # 6 fields: every 2 seconds
    procs: list[Proc] = []
    try:
        worker = Proc([sys.executable, "-m", "celery", "-A", "aos.tasks.app", "worker", "-P", "prefork", "-c", "2",
                       "-Q", f"{aos_env['AOS_STEP_QUEUE']},aos.default", "-n", f"ticks-{uuid.uuid4().hex[:6]}@%h",
                       "--loglevel", "INFO", "--without-mingle", "--without-gossip"], env, tmp_path / "worker.log")
        procs.append(worker)
        worker.wait_for("ready.", 90)
        # DEBUG: beat logs the housekeeping ticks it sends at DEBUG (aos/tasks/logs.py), and they are counted here
        beats = [Proc([sys.executable, "-m", "celery", "-A", "aos.tasks.app", "beat", "--loglevel", "DEBUG",
                       "-s", str(tmp_path / f"beat{i}-schedule")], env, tmp_path / f"beat{i}.log") for i in range(2)]
        procs.extend(beats)
        deadline = time.monotonic() + 30
        while _beat_holder_pid() not in {b.proc.pid for b in beats}:
            assert time.monotonic() < deadline, [b.text()[-2000:] for b in beats]
            time.sleep(0.2)
        for b in beats:
            b.wait_for("beat: Starting", 30)
        time.sleep(2 * INTERVAL_S)  # both beats are up and ticking: measure from here

        t0, before = time.monotonic(), _tokens()
        time.sleep(10)
        after, elapsed = _tokens(), time.monotonic() - t0
        _assert_once_per_tick(before, after, elapsed)
        leader = next(b for b in beats if b.proc.pid == _beat_holder_pid())
        standby = next(b for b in beats if b is not leader)
        assert _sent(leader) > 0 and _sent(standby) == 0  # the standby never sent a tick

        ticks = _ticks_fired(schedule["id"])
        assert ticks and max(ticks.values()) == 1, ticks  # no tick of the user schedule fired twice

        # The leader dies without releasing its lease: the standby takes over once the lease has lapsed.
        beat_token = after[BEAT_LEASE]
        leader.stop(signal.SIGKILL)
        deadline = time.monotonic() + LEASE_TTL_S + 15
        while _beat_holder_pid() != standby.proc.pid:
            assert time.monotonic() < deadline, standby.text()[-3000:]
            time.sleep(0.2)
        assert _tokens()[BEAT_LEASE] == beat_token + 1
        time.sleep(2 * INTERVAL_S)
        t0, before = time.monotonic(), _tokens()
        time.sleep(6)
        after, elapsed = _tokens(), time.monotonic() - t0
        _assert_once_per_tick(before, after, elapsed)
        assert _sent(standby) > 0

        ticks_after = _ticks_fired(schedule["id"])
        assert len(ticks_after) > len(ticks) and max(ticks_after.values()) == 1, ticks_after
        times = sorted(datetime.fromisoformat(t) for t in ticks_after)
        assert all(t.second % SCHEDULE_EVERY_S == 0 for t in times)  # each firing is one cron tick
        with session_scope() as s:  # the scheduled runs really run
            statuses = Counter(s.scalars(select(Run.status).join(Workflow, Workflow.id == Run.workflow_id)
                                         .where(Workflow.tenant_id == ctx.tenant_id, Workflow.name == wf)).all())
        assert statuses["succeeded"] >= 1, statuses
    finally:
        for p in procs:
            p.stop()
        broker.stop()
        delete_schedule(ctx, schedule["id"])
