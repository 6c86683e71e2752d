"""Retention: delete old data by policy, in small batches, each batch its own short transaction.

The policy comes from ``AOS_RETENTION_*`` settings (days; 0 keeps a kind forever):

| table               | what goes                                                                 |
|---------------------|---------------------------------------------------------------------------|
| checkpoints         | attempts of runs finished before the checkpoint (or run) cutoff           |
| run_events          | timeline events of the same runs                                          |
| runs                | runs finished before the run cutoff (their checkpoints/events went first) |
| outbox              | delivered rows delivered before the outbox cutoff                         |
| replay_log          | rows older than the cutoff whose dead letter is gone from dead_letters    |
| dead_letter_archive | rows archived before the cutoff                                           |

Only finished runs (succeeded, failed, cancelled, dead-lettered) are ever touched;
a queued or running run, however old, is not. Each batch is ``WITH batch AS
MATERIALIZED (SELECT id … LIMIT n FOR UPDATE SKIP LOCKED) DELETE … USING batch``
with the policy repeated on the outer statement, so a row that changed meanwhile
(a run resumed after the batch was chosen) is re-checked and kept. Batches keep
locks and WAL bursts short, so retention can run next to live traffic. ``plan()`` counts the
same predicates without deleting (``aos retention run --dry-run``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from aos import metrics
from aos.config import Settings, get_settings
from aos.db.models import FINAL_RUN_STATUSES
from aos.db.session import session_scope
from aos.services.locks import Lease

log = logging.getLogger(__name__)

_FINAL = "(" + ", ".join(f"'{s}'" for s in sorted(FINAL_RUN_STATUSES)) + ")"
# Only finished runs (every final transition sets finished_at; the predicate matches ix_runs_finished).
_run_finished_before = f"runs.status IN {_FINAL} AND runs.finished_at < :cutoff"


@dataclass(frozen=True)
class Rule:
    """One table's policy: the ids that go are ``SELECT id FROM <source> WHERE <where>``."""

    table: str
    source: str         # FROM clause of the selection: the table itself, or the table joined to its run
    where: str          # predicate over the source; binds :cutoff
    cutoff: datetime
    lock: str           # the relation FOR UPDATE locks in the sub-select

    def count_sql(self) -> str:
        return f"SELECT count(*) FROM {self.source} WHERE {self.where}"

    def batch_sql(self) -> str:
        # MATERIALIZED: the batch is chosen once. As a plain `id IN (SELECT … LIMIT n)` the planner may
        # rescan the sub-select per outer row and delete far more than n rows in one transaction.
        # SKIP LOCKED: never wait on a row live traffic holds. A single-table predicate is repeated on the
        # DELETE itself, so Postgres re-checks a row that changed after the batch was chosen (a run resumed
        # meanwhile is then kept).
        recheck = f" AND {self.where}" if self.source == self.table else ""
        return (f"WITH batch AS MATERIALIZED (SELECT {self.table}.id FROM {self.source} WHERE {self.where} "
                f"LIMIT :limit FOR UPDATE OF {self.lock} SKIP LOCKED) "
                f"DELETE FROM {self.table} USING batch WHERE {self.table}.id = batch.id{recheck}")


def _cutoff(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)


def policy(settings: Settings | None = None, now: datetime | None = None) -> list[Rule]:
    """The rules in the order they run (children before parents); disabled kinds are left out."""
    st = settings or get_settings()
    now = now or datetime.now(UTC)
    rules: list[Rule] = []
    # A run's checkpoints and events go with the run at the latest: the shorter enabled period wins.
    step_days = [d for d in (st.retention_checkpoints_days, st.retention_runs_days) if d > 0]
    if step_days:
        cut = _cutoff(now, min(step_days))
        for table in ("checkpoints", "run_events"):
            rules.append(Rule(table, f"{table} JOIN runs ON runs.id = {table}.run_id", _run_finished_before, cut,
                              table))
    if st.retention_runs_days > 0:
        rules.append(Rule("runs", "runs", _run_finished_before, _cutoff(now, st.retention_runs_days), "runs"))
    if st.retention_outbox_days > 0:
        rules.append(Rule("outbox", "outbox", "outbox.status = 'delivered' AND outbox.delivered_at < :cutoff",
                          _cutoff(now, st.retention_outbox_days), "outbox"))
    if st.retention_replay_log_days > 0:
        # A replay happens once because its replay_log row exists: keep the row while its dead letter does.
        rules.append(Rule("replay_log", "replay_log",
                          "replay_log.replayed_at < :cutoff AND NOT EXISTS "
                          "(SELECT 1 FROM dead_letters d WHERE d.id = replay_log.dead_letter_id)",
                          _cutoff(now, st.retention_replay_log_days), "replay_log"))
    if st.retention_archive_days > 0:
        rules.append(Rule("dead_letter_archive", "dead_letter_archive", "dead_letter_archive.archived_at < :cutoff",
                          _cutoff(now, st.retention_archive_days), "dead_letter_archive"))
    return rules


def plan(settings: Settings | None = None) -> dict[str, int]:
    """How many rows of each table the policy would delete now (nothing is deleted)."""
    counts: dict[str, int] = {}
    with session_scope() as s:
        for rule in policy(settings):
            counts[rule.table] = int(s.execute(text(rule.count_sql()), {"cutoff": rule.cutoff}).scalar_one())
    return counts


Progress = Callable[[str, int], None]


def run(*, lease: Lease | None = None, batch: int | None = None, settings: Settings | None = None,
        on_batch: Progress | None = None) -> dict[str, int]:
    """Delete what the policy says, table by table in batches; return rows deleted per table.

    With a ``lease`` (the beat job) every batch is fenced: a leader that lost its lease stops at its next
    batch (``LEASE_HELD``). ``on_batch(table, deleted_so_far)`` reports progress after each batch.
    """
    st = settings or get_settings()
    size = int(batch or st.retention_batch)
    if size < 1:
        raise ValueError("retention batch size must be at least 1")
    deleted: dict[str, int] = {}
    for rule in policy(st):
        sql = text(rule.batch_sql())
        total = 0
        while True:
            with session_scope() as s:
                if lease is not None:
                    lease.fence(s)
                n = s.execute(sql, {"cutoff": rule.cutoff, "limit": size}).rowcount  # type: ignore[attr-defined]
            total += n
            metrics.retention_deleted(rule.table, n)
            if on_batch is not None and n:
                on_batch(rule.table, total)
            if n < size:
                break
        deleted[rule.table] = total
        if total:
            log.info("retention: deleted %d %s rows (cutoff %s)", total, rule.table, rule.cutoff.isoformat())
    return deleted


def describe_policy(settings: Settings | None = None) -> list[dict[str, Any]]:
    """The effective rules, for the CLI: table and cutoff."""
    return [{"table": r.table, "cutoff": r.cutoff.isoformat()} for r in policy(settings)]
