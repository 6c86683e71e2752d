"""An idle deployment's logs are quiet at INFO: a real `aos worker` and `aos beat` tick the outbox drain, the
reaper, user schedules and reconciliation every second or faster, and none of those ticks writes a line at
INFO; at DEBUG they all show. (Before: two worker lines per drain every 2 s, 1,207 of 2,079 lines in 20 min.)"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from aos.db.migrate import upgrade
from aos.tasks.logs import HOUSEKEEPING_TASKS
from tests.ops.conftest import AosProcess

TICKS = {"AOS_OUTBOX_INTERVAL_S": "0.5", "AOS_REAPER_INTERVAL_S": "1", "AOS_SCHEDULES_INTERVAL_S": "1",
         "AOS_DLQ_RECONCILE_INTERVAL_S": "1"}


def _own_vhost(broker_url: str) -> str:
    """The session's broker, in a Redis database of its own: no other test's worker takes these ticks."""
    if broker_url.startswith("redis+socket://"):
        return broker_url.split("?")[0] + "?virtual_host=11"
    if broker_url.startswith(("redis://", "rediss://")):
        head, _, _db = broker_url.rpartition("/")
        return f"{head}/11" if head.count("/") >= 2 else f"{broker_url}/11"
    pytest.skip("a Redis broker is needed to give the ticks a database of their own")


@pytest.fixture
def quiet_db(servers):
    name = f"aos_quiet_{uuid.uuid4().hex[:8]}"
    servers.create_database(name)
    url = servers.database_url(name)
    upgrade(url)
    yield url
    servers.drop_database(name)


def _idle_stack(env: dict[str, str], tmp, level: str, seconds: float) -> tuple[str, str]:
    worker = AosProcess(["worker", "-c", "1", "-Q", "aos.default", "--loglevel", level], env,
                        tmp / f"worker-{level}.log")
    beat = AosProcess(["beat", "--loglevel", level], env, tmp / f"beat-{level}.log")
    try:
        worker.start(lambda: b"ready." in worker.log_path.read_bytes(), timeout=90)
        ready = len(worker.tail(10_000_000))
        beat.start(lambda: True)
        time.sleep(seconds)
    finally:
        beat.stop()
        worker.stop()
    return worker.tail(10_000_000)[ready:], beat.tail(10_000_000)


def test_idle_housekeeping_writes_nothing_at_info_and_everything_at_debug(aos_env, servers, quiet_db, tmp_path):
    from sqlalchemy import create_engine

    from aos.db.models import DistributedLock
    from aos.db.session import sqlalchemy_url

    env = {**aos_env, **TICKS, "AOS_DATABASE_URL": quiet_db, "AOS_BROKER_URL": _own_vhost(servers.broker_url),
           "AOS_DATA_DIR": str(tmp_path), "AOS_METRICS_DIR": str(tmp_path / "metrics")}
    started = datetime.now(UTC)
    worker_log, beat_log = _idle_stack(env, tmp_path, "INFO", seconds=8)

    # the ticks did run: the reaper's and the schedules' leases were taken during the idle period
    engine = create_engine(sqlalchemy_url(quiet_db))
    with engine.connect() as conn:
        taken = dict(conn.execute(select(DistributedLock.name, DistributedLock.acquired_at)).all())
    engine.dispose()
    for job in ("aos.runs.reap", "aos.schedules.fire", "aos.dlq.reconcile"):
        assert job in taken and taken[job] >= started, f"{job} never ran: {taken}"

    noisy = [line for line in worker_log.splitlines() if any(t in line for t in HOUSEKEEPING_TASKS)]
    assert not noisy, "housekeeping at INFO in the worker log:\n" + "\n".join(noisy[:10])
    assert not any("Sending due task" in line for line in beat_log.splitlines()), beat_log[-2000:]
    assert "singleton" not in worker_log

    worker_log, beat_log = _idle_stack(env, tmp_path, "DEBUG", seconds=5)
    for task in ("aos.outbox.drain", "aos.runs.reap", "aos.schedules.fire"):
        assert f"Task {task}[" in worker_log and "succeeded" in worker_log, f"{task} not shown at DEBUG"
        assert f"Sending due task {task} ({task})" in beat_log
