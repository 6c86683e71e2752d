"""Retention: the dry run counts exactly what the run deletes, in batches of their own transactions, only
finished runs older than the policy and nothing else; a stale leader deletes nothing."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from aos.db.models import (
    Checkpoint,
    DeadLetter,
    DeadLetterArchive,
    OutboxMessage,
    ReplayLog,
    Run,
    RunEvent,
)
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import retention
from aos.services.locks import acquire

POLICY = {"AOS_RETENTION_CHECKPOINTS_DAYS": "30", "AOS_RETENTION_RUNS_DAYS": "90", "AOS_RETENTION_OUTBOX_DAYS": "7",
          "AOS_RETENTION_REPLAY_LOG_DAYS": "30", "AOS_RETENTION_ARCHIVE_DAYS": "180"}
ONLY_OUTBOX = {**{k: "0" for k in POLICY}, "AOS_RETENTION_OUTBOX_DAYS": "7"}


def _ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _run(s, tenant_id, status: str, days_ago: float, *, finished: bool = True) -> uuid.UUID:  # noqa: ANN001
    plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}},
                      {"id": "b", "skill": "json.transform", "args": {"input": 2, "expr": "@"}}]}
    run = Run(tenant_id=tenant_id, plan=plan, plan_hash="0" * 64, skill_versions={}, inputs={}, step_count=2,
              status=status, created_at=_ago(days_ago + 1), updated_at=_ago(days_ago),
              finished_at=_ago(days_ago) if finished else None)
    s.add(run)
    s.flush()
    for i in range(2):
        s.add(Checkpoint(tenant_id=tenant_id, run_id=run.id, step_index=i, step_id="ab"[i], attempt=1,
                         status="succeeded" if finished else "running", skill="json.transform"))
    for t in ("run.queued", "run.started", "step.succeeded"):
        s.add(RunEvent(tenant_id=tenant_id, run_id=run.id, type=t, created_at=_ago(days_ago)))
    return run.id


def _count(model, *where) -> int:  # noqa: ANN001
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _deleted_metric(table: str) -> float:
    return REGISTRY.get_sample_value("aos_retention_deleted_total", {"table": table}) or 0.0


def test_dry_run_counts_what_the_run_deletes_and_only_old_finished_data_goes(tenant, settings_env):
    ctx, _ = tenant
    tid = ctx.tenant_id
    settings = settings_env(**POLICY)
    with session_scope() as s:
        runs = {
            "old_succeeded": _run(s, tid, "succeeded", 100),
            "old_cancelled": _run(s, tid, "cancelled", 95),
            "mid_failed": _run(s, tid, "failed", 45),        # past the checkpoint policy, not the run policy
            "recent": _run(s, tid, "succeeded", 5),
            "ancient_running": _run(s, tid, "running", 200, finished=False),  # never touched, however old
        }
        outbox = {
            "old_delivered": OutboxMessage(tenant_id=tid, topic="run.succeeded", payload={}, status="delivered",
                                           delivered_at=_ago(10)),
            "recent_delivered": OutboxMessage(tenant_id=tid, topic="run.succeeded", payload={}, status="delivered",
                                              delivered_at=_ago(1)),
            "old_pending": OutboxMessage(tenant_id=tid, topic="run.succeeded", payload={}, status="pending",
                                         created_at=_ago(60)),
        }
        s.add_all(outbox.values())
        open_dl = DeadLetter(tenant_id=tid, kind="step", payload={}, error_code="HTTP_TIMEOUT")
        s.add(open_dl)
        s.flush()
        base = random.randint(10**12, 10**13)
        replays = {
            "old_gone": ReplayLog(tenant_id=tid, dead_letter_id=base, result="replayed", replayed_at=_ago(40)),
            "old_dl_still_there": ReplayLog(tenant_id=tid, dead_letter_id=open_dl.id, result="replayed",
                                            replayed_at=_ago(40)),
            "recent": ReplayLog(tenant_id=tid, dead_letter_id=base + 1, result="replayed", replayed_at=_ago(2)),
        }
        s.add_all(replays.values())
        archive = {
            "old": DeadLetterArchive(id=base + 2, tenant_id=tid, kind="step", payload={}, error_code="X",
                                     status="discarded", archived_at=_ago(200)),
            "recent": DeadLetterArchive(id=base + 3, tenant_id=tid, kind="step", payload={}, error_code="X",
                                        status="discarded", archived_at=_ago(20)),
        }
        s.add_all(archive.values())
        s.flush()
        ids = {"outbox": {k: v.id for k, v in outbox.items()}, "replay": {k: v.id for k, v in replays.items()},
               "archive": {k: v.id for k, v in archive.items()}}

    planned = retention.plan(settings)
    mine = {"checkpoints": 6, "run_events": 9, "runs": 2, "outbox": 1, "replay_log": 1, "dead_letter_archive": 1}
    assert set(planned) == set(mine)
    assert all(planned[t] >= n for t, n in mine.items()), planned
    before = {t: _deleted_metric(t) for t in mine}

    deleted = retention.run(settings=settings)
    assert deleted == planned
    assert retention.plan(settings) == dict.fromkeys(mine, 0)
    assert {t: _deleted_metric(t) - before[t] for t in mine} == {t: float(n) for t, n in deleted.items()}

    gone, kept = (runs["old_succeeded"], runs["old_cancelled"]), (runs["mid_failed"], runs["recent"],
                                                                   runs["ancient_running"])
    assert _count(Run, Run.id.in_(gone)) == 0 and _count(Run, Run.id.in_(kept)) == 3
    assert _count(Checkpoint, Checkpoint.run_id == runs["mid_failed"]) == 0      # the run row stays, its
    assert _count(RunEvent, RunEvent.run_id == runs["mid_failed"]) == 0          # step details are gone
    for rid in (runs["recent"], runs["ancient_running"]):
        assert _count(Checkpoint, Checkpoint.run_id == rid) == 2 and _count(RunEvent, RunEvent.run_id == rid) == 3
    assert _count(OutboxMessage, OutboxMessage.id.in_(ids["outbox"].values())) == 2
    assert _count(OutboxMessage, OutboxMessage.id == ids["outbox"]["old_delivered"]) == 0
    # a replay_log row stays while its dead letter exists: the replay must still happen only once
    assert _count(ReplayLog, ReplayLog.id.in_(ids["replay"].values())) == 2
    assert _count(ReplayLog, ReplayLog.id == ids["replay"]["old_gone"]) == 0
    assert _count(DeadLetterArchive, DeadLetterArchive.id == ids["archive"]["old"]) == 0
    assert _count(DeadLetterArchive, DeadLetterArchive.id == ids["archive"]["recent"]) == 1


def _old_delivered(tenant_id, n: int) -> list[int]:  # noqa: ANN001
    with session_scope() as s:
        rows = [OutboxMessage(tenant_id=tenant_id, topic="run.succeeded", payload={"i": i}, status="delivered",
                              delivered_at=_ago(30)) for i in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def test_deletes_in_batches_each_committed_on_its_own(tenant, settings_env):
    ctx, _ = tenant
    settings = settings_env(**ONLY_OUTBOX)
    ids = _old_delivered(ctx.tenant_id, 7)
    assert retention.plan(settings) == {"outbox": 7}
    progress: list[tuple[str, int, int]] = []

    def on_batch(table: str, done: int) -> None:
        # another connection already sees the batch gone: it was committed before the next one started
        progress.append((table, done, _count(OutboxMessage, OutboxMessage.id.in_(ids))))

    assert retention.run(settings=settings, batch=3, on_batch=on_batch) == {"outbox": 7}
    assert progress == [("outbox", 3, 4), ("outbox", 6, 1), ("outbox", 7, 0)]


def test_a_stale_leader_deletes_nothing(tenant, settings_env):
    ctx, _ = tenant
    settings = settings_env(**ONLY_OUTBOX)
    ids = _old_delivered(ctx.tenant_id, 3)
    name = f"retention-test.{uuid.uuid4().hex[:8]}"
    stale = acquire(name, "old-leader", 0.2)
    time.sleep(0.4)
    current = acquire(name, "new-leader", 30)
    assert current is not None and current.fencing_token > stale.fencing_token
    with pytest.raises(AosError) as e:
        retention.run(settings=settings, lease=stale)
    assert e.value.code == "LEASE_HELD"
    assert _count(OutboxMessage, OutboxMessage.id.in_(ids)) == 3
    assert retention.run(settings=settings, lease=current) == {"outbox": 3}
