"""The data model, as SQLAlchemy 2 typed models.

Every tenant-owned table carries ``tenant_id``; indexes follow the real access
paths (a tenant's runs by time and status, a run's checkpoints and events, the
outbox's pending rows, the reaper's silent runs).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aos.db.types import Embedding
from aos.db.vocabulary import (  # noqa: F401 — the vocabularies are read as models.X too
    CHECKPOINT_STATUSES,
    DEAD_LETTER_KINDS,
    DEAD_LETTER_STATUSES,
    ENQUEUE_TOPIC,
    FINAL_RUN_STATUSES,
    OUTBOX_STATUSES,
    OUTBOX_TOPICS,
    RECOVERY_LAYERS,
    RUN_EVENT_TYPES,
    RUN_STATUSES,
    SUGGESTION_STATUSES,
    WAIT_KINDS,
    WAIT_STATUSES,
    WEBHOOK_EVENTS,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 6)


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, Any: JSONB}


def _now_col() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _run_ref() -> ForeignKeyConstraint:
    """A step-path row's reference to its run, with the run's tenant: the statement that inserts it has
    just locked that run row, so the check is free — a reference to ``tenants`` would lock the tenant's
    row, shared by all of its workers, at every insert."""
    return ForeignKeyConstraint(["run_id", "tenant_id"], ["runs.id", "runs.tenant_id"], ondelete="CASCADE")


def _tenant_col() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(Money)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    # the cap on the tenant's runs holding a slot (queued and dispatched, or running); NULL: the deployment's
    # default (AOS_TENANT_MAX_RUNNING_RUNS). aos/services/concurrency.py
    max_running_runs: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now_col()


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` finds the row without a scan."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _now_col()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index(None, "tenant_id"),)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # allowed_skills, http_hosts, db_connections, max_cost_usd
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    # developer surface (issue 4): when PUT /agents/{id}/state last replaced the state
    state_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)


class Workflow(Base):
    """A stored plan; each change is a new row with the next version."""

    __tablename__ = "workflows"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    plan_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    agent_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("agents.id", ondelete="SET NULL"))
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflows.id", ondelete="SET NULL"))
    name: Mapped[str | None] = mapped_column(String(200))
    # the plan and skill versions the run started with: a deploy never changes a run in flight
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    plan_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    skill_versions: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    step_count: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="queued")
    # optimistic locking: every state change is `UPDATE … WHERE version = :seen`
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    next_step: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # budget limits (NULL = unlimited) and spend, reserved before a step and settled after
    max_cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    max_tokens: Mapped[int | None] = mapped_column(BigInteger)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    max_wall_s: Mapped[int | None] = mapped_column(Integer)
    spent_cost_usd: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    spent_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    reserved_cost_usd: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    steps_started: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    budget_warned: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # the current step's attempt: its number (0: none yet), whether it is open (claimed, not yet settled:
    # a delivery that dies leaves it open for the next one to take over, same attempt, same idempotency
    # key), when it started, how many deliveries it took, and its step.started timeline event id. An
    # attempt's checkpoint row is written when it ends (aos/db/step_store.py).
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    attempt_open: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    attempt_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt_deliveries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # the attempt number the step's retry budget counts from (a resume or a dead-letter replay restarts it)
    retry_base: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    attempt_event_id: Mapped[int | None] = mapped_column(BigInteger)
    # liveness: who holds the run's current step and until when we expect to hear from it
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wake_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # a golden replay: the recorded run it re-executes (skills see that run's identity); NULL otherwise
    replay_of: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # concurrency limits (aos/services/concurrency.py): the groups the run counts in ([{"group", "limit"}];
    # NULL: no limit applied when it was queued), and since when a queued run waits for a slot (NULL: it
    # holds one, or never needed one). A run holds a slot while queued or running and not waiting.
    concurrency: Mapped[list[Any] | None] = mapped_column(JSONB)
    # how many times a person amended the stored plan (run_amendments): a worker's cached plan of an older
    # revision may not run a step (every claim is fenced by it), so an amended step never runs as it was
    plan_revision: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now_col()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now_col()
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "tenant_id", "status", "created_at"),
        Index(None, "agent_id", "created_at"),
        # the active runs (reaper, gauges): only the id, so that a claim or a settle, which change the
        # lease but not the status, touch no index and stay HOT updates (fillfactor leaves them room)
        Index("ix_runs_active", "id", postgresql_where=text("status IN ('queued', 'running')")),
        # what a child row's (run_id, tenant_id) references: its tenant is its run's tenant
        UniqueConstraint("id", "tenant_id"),
        # retention: old finished runs, without a scan
        # runs waiting for a concurrency slot, in the order they started waiting
        Index("ix_runs_waiting", "tenant_id", "waiting_since", "id", postgresql_where=text("waiting_since IS NOT NULL")),
        Index("ix_runs_finished", "finished_at",
              postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled', 'dead_lettered')")),
        {"postgresql_with": {"fillfactor": 80}},
    )


class Checkpoint(Base):
    """One finished attempt of one step (the attempt in progress lives on its run row). At most one
    succeeded row per (run, step): a partial unique index."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)  # its run's (_run_ref)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    step_id: Mapped[str] = mapped_column(String(100), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    skill: Mapped[str] = mapped_column(String(100), nullable=False)
    args_hash: Mapped[str | None] = mapped_column(String(64))
    args: Mapped[Any | None] = mapped_column(JSONB)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    raw: Mapped[Any | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(64))
    cost_usd: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    input_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = _now_col()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Numeric(12, 3))
    # when the step's fallback produced this checkpoint: the primary call's {"args", "outcome"}
    fallback_from: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # the ids (from run_events' sequence) of this attempt's own step.started / step.succeeded timeline
    # events, which are read from here instead of being rows of their own (aos/services/timeline.py)
    started_event_id: Mapped[int | None] = mapped_column(BigInteger)
    finished_event_id: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        _run_ref(),
        CheckConstraint(_in("status", CHECKPOINT_STATUSES), name="status"),
        UniqueConstraint("run_id", "step_index", "attempt"),
        Index("uq_checkpoints_one_success", "run_id", "step_index", unique=True,
              postgresql_where=text("status IN ('succeeded', 'skipped')")),
        # the simulator's history of finished attempts; a running attempt is not in it, so opening one
        # costs one index entry less
        Index(None, "tenant_id", "skill", "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
    )


class RunWait(Base):
    """What a waiting run waits for: one row per wait (a run may wait at several steps, or again after a
    resume). The open wait of a run is its row with status ``waiting``; its signal, once delivered, is kept
    here with the client's idempotency key, so a delivery sent twice is answered, not applied, twice."""

    __tablename__ = "run_waits"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)  # its run's (_run_ref)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    step_id: Mapped[str] = mapped_column(String(100), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    signal: Mapped[str] = mapped_column(String(100), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    payload_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="waiting")
    payload: Mapped[Any | None] = mapped_column(JSONB)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now_col()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        _run_ref(),
        CheckConstraint(_in("status", WAIT_STATUSES), name="status"),
        CheckConstraint(_in("kind", WAIT_KINDS), name="kind"),
        Index(None, "run_id", "id"),
        # beat's deadline sweep: open waits by deadline, without a scan
        Index("ix_run_waits_deadline", "deadline", postgresql_where=text("status = 'waiting' AND deadline IS NOT NULL")),
        # a client's key names one delivery per run
        Index("uq_run_waits_key", "run_id", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
    )


class GoldenReplayCall(Base):
    """A recorded call of a non-deterministic skill that a golden replay run answers from."""

    __tablename__ = "golden_replay_calls"
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("runs.id", ondelete="CASCADE"),
                                              primary_key=True)
    step_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    # primary | fallback | amendment (the amendments a person made after that attempt, which the replay re-enacts)
    role: Mapped[str] = mapped_column(String(10), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    # {skill, args, outcome, raw}; for an amendment {"amendments": [{order, changes, …}]}
    call: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    __table_args__ = (
        CheckConstraint("role IN ('primary', 'fallback', 'amendment')", name="role"),
        # the reaper finds replays left where an amendment is due through the (few) amendment rows
        Index("ix_golden_replay_calls_amendments", "run_id", postgresql_where=text("role = 'amendment'")),
    )


class RunEvent(Base):
    """The timeline: every state change of a run and its steps."""

    __tablename__ = "run_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)  # its run's (_run_ref)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    type: Mapped[str] = mapped_column(String(50), nullable=False)
    step_id: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (_run_ref(), Index(None, "run_id", "id"))


class OutboxMessage(Base):
    """Written in the transaction of the state change it announces; delivered later."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    topic: Mapped[str] = mapped_column(String(50), nullable=False)  # run.enqueue, run.succeeded, …
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = _now_col()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_col()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_pending", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_outbox_delivered", "delivered_at", postgresql_where=text("status = 'delivered'")),  # retention
    )


class _DeadLetterColumns:
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)  # step, outbox, task
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    step_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now_col()
    # when it stopped being open (replayed, discarded, resolved): archiving counts from here
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeadLetter(_DeadLetterColumns, Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="open")
    __table_args__ = (
        Index(None, "tenant_id", "status", "created_at"),
        CheckConstraint(_in("status", DEAD_LETTER_STATUSES), name="status"),
    )


class DeadLetterArchive(_DeadLetterColumns, Base):
    __tablename__ = "dead_letter_archive"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the dead letter's own id
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    archived_at: Mapped[datetime] = _now_col()
    __table_args__ = (Index(None, "archived_at"),)


class ReplayLog(Base):
    """A dead-letter replay happens once, even if asked twice or after a Redis restart."""

    __tablename__ = "replay_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    dead_letter_id: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    result: Mapped[str] = mapped_column(String(30), nullable=False)
    replayed_at: Mapped[datetime] = _now_col()
    __table_args__ = (Index(None, "replayed_at"),)


class DistributedLock(Base):
    """Leader election for singleton jobs: a lease with a fencing token that only grows."""

    __tablename__ = "distributed_locks"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    fencing_token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    acquired_at: Mapped[datetime] = _now_col()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class FailurePattern(Base):
    """A known failure and the recovery that worked, for the hybrid recovery lookup."""

    __tablename__ = "failure_patterns"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    skill: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    signature: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)  # sanitized before storing
    recovery: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # cache, embedding, llm, human
    embedding: Mapped[list[float] | None] = mapped_column(Embedding())
    success_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failure_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now_col()
    updated_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("tenant_id", "signature"), Index(None, "tenant_id", "error_code"))


class Schedule(Base):
    __tablename__ = "schedules"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    workflow_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("workflows.id", ondelete="CASCADE"),
                                                   nullable=False)
    cron: Mapped[str] = mapped_column(String(100), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default="UTC")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    next_fire_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # what the last tick did: the run it started, or why it could not start one
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (Index(None, "enabled", "next_fire_at"), Index(None, "tenant_id"))


class TenantDailySpend(Base):
    """A tenant's spend per UTC day, reserved and settled like a run's budget."""

    __tablename__ = "tenant_daily_spend"
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    spent_cost_usd: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    reserved_cost_usd: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    spent_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # when the day's spend first reached WARN_RATIO of the tenant's daily budget (its budget.warning is sent once)
    warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TenantQuota(Base):
    """A tenant's own limits (issue 13); a NULL column means the deployment's default (rates) or none (daily
    quotas). The daily cost budget stays ``tenants.daily_budget_usd``, which the step claim reads."""

    __tablename__ = "tenant_quotas"
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 primary_key=True)
    key_requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tenant_requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    daily_requests: Mapped[int | None] = mapped_column(Integer)
    daily_runs: Mapped[int | None] = mapped_column(Integer)
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _now_col()


# --- failure recovery (aos/services/recovery) -----------------------------------------------------------------


class RecoverySuggestion(Base):
    """A suggestion for one failure of a run's step: what to do, which layer said so, and what came of it."""

    __tablename__ = "recovery_suggestions"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("runs.id", ondelete="CASCADE"),
                                              nullable=False)
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    step_id: Mapped[str] = mapped_column(String(200), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)  # the run's attempt count when it failed
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[str] = mapped_column(String(64), nullable=False)
    pattern_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("failure_patterns.id", ondelete="SET NULL"))
    layer: Mapped[str] = mapped_column(String(20), nullable=False)
    mode: Mapped[str] = mapped_column(String(20), nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    explanation: Mapped[str] = mapped_column(Text, nullable=False)
    confidence: Mapped[float] = mapped_column(Numeric(4, 3), nullable=False)
    similarity: Mapped[float | None] = mapped_column(Numeric(4, 3))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="offered")
    helpful: Mapped[bool | None] = mapped_column(Boolean)
    feedback_note: Mapped[str | None] = mapped_column(Text)
    applied_by: Mapped[str | None] = mapped_column(String(20))  # person | auto
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (
        UniqueConstraint("run_id", "step_index", "attempt"),
        Index(None, "tenant_id", "created_at"),
        Index("ix_recovery_suggestions_applied", "run_id", postgresql_where=text("status = 'applied'")),
        CheckConstraint(_in("status", SUGGESTION_STATUSES), name="status"),
        CheckConstraint(_in("layer", RECOVERY_LAYERS), name="layer"),
    )


class RunAmendment(Base):
    """One step of one run changed after submission, by a person applying a recovery suggestion: what changed
    (``changes``: field → {"from", "to"}), the step's hash before and after, and who did it. The run's
    ``plan_hash`` stays the submitted plan's; its stored plan holds the amended step."""

    __tablename__ = "run_amendments"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = _tenant_col()
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("runs.id", ondelete="CASCADE"),
                                              nullable=False)
    plan_revision: Mapped[int] = mapped_column(Integer, nullable=False)  # the run's revision this one made
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    step_id: Mapped[str] = mapped_column(String(200), nullable=False)
    after_attempt: Mapped[int] = mapped_column(Integer, nullable=False)  # the step's attempts that ran before it
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    step_hash_before: Mapped[str] = mapped_column(String(64), nullable=False)
    step_hash_after: Mapped[str] = mapped_column(String(64), nullable=False)
    suggestion_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("recovery_suggestions.id", ondelete="SET NULL"))
    applied_by: Mapped[str] = mapped_column(String(20), nullable=False)  # person | auto
    key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # the API key a person used, if any
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("run_id", "plan_revision"),)


class RecoveryUsage(Base):
    """Calls to embedding and LLM providers per tenant per UTC day: the quota counts these."""

    __tablename__ = "recovery_usage"
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # embedding | llm
    calls: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    refused: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # an embedding costs millionths of a dollar: more places than Money
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(18, 10), nullable=False, server_default="0")


class RecoverySettings(Base):
    """A tenant's recovery choices: auto-apply of safe suggestions, and its own daily quotas (None: default)."""

    __tablename__ = "recovery_settings"
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 primary_key=True)
    auto_apply: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    embedding_quota: Mapped[int | None] = mapped_column(Integer)
    llm_quota: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _now_col()
