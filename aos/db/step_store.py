"""The step path's statements: a step is claimed in one round trip and settled in one.

Each statement is a single SQL command whose data-modifying CTEs all hang off the fenced
``UPDATE runs``: when the fence does not hold (another delivery owns the step, the run was
cancelled, the version moved on), the run row is not changed and nothing else is written.

- ``claim``: takes the lease of the run's current step (version bump), counts a new attempt in
  ``steps_started``, reserves the step's estimate on the run's budget (refusing it past a limit),
  opens the attempt's checkpoint (or takes over the ``running`` attempt of a dead delivery, so
  its idempotency key stays the same), and records ``run.started``/``step.started``.
- ``settle``: writes the attempt's checkpoint, moves the run on (next step, retry wake-up, or a
  final status), replaces the reservation by what the step spent (run and tenant day), and
  inserts the events, webhook outbox rows and dead letters the outcome implies.

They run on any psycopg connection: ``aos.db.direct``'s on the hot path, or a session's own
(``session_connection``) inside a larger transaction. JSON goes in as text cast to jsonb, so the
caller serialises it first and can refuse what cannot be stored before any statement runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from sqlalchemy.orm import Session

from aos.db.direct import DatabaseOperationalError

Row = dict[str, Any]

_CLAIM = """
WITH last AS (
    SELECT id, attempt, status FROM checkpoints
    WHERE run_id = %(run)s AND step_index = %(index)s
    ORDER BY attempt DESC LIMIT 1
), prior AS (
    SELECT status FROM runs WHERE id = %(run)s
), r AS (
    UPDATE runs SET
        status = 'running', version = version + 1, lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease_s)s), heartbeat_at = now(), wake_at = NULL,
        started_at = coalesce(started_at, now()), updated_at = now(),
        steps_started = steps_started + CASE WHEN (SELECT status FROM last) = 'running' THEN 0 ELSE 1 END,
        reserved_cost_usd = reserved_cost_usd
            + CASE WHEN (SELECT status FROM last) = 'running' THEN 0 ELSE %(cost)s END,
        reserved_tokens = reserved_tokens
            + CASE WHEN (SELECT status FROM last) = 'running' THEN 0 ELSE %(tokens)s END
    WHERE id = %(run)s AND status IN ('queued', 'running') AND next_step = %(index)s
      AND (lease_expires_at IS NULL OR lease_expires_at <= now() OR lease_owner = ANY(%(mine)s))
      AND (max_wall_s IS NULL OR started_at IS NULL OR now() - started_at <= make_interval(secs => max_wall_s))
      AND ((SELECT status FROM last) IS NOT DISTINCT FROM 'running' OR (
               (max_cost_usd IS NULL OR spent_cost_usd + reserved_cost_usd + %(cost)s <= max_cost_usd)
           AND (max_tokens IS NULL OR spent_tokens + reserved_tokens + %(tokens)s <= max_tokens)
           AND (max_steps IS NULL OR steps_started + 1 <= max_steps)))
    RETURNING version, tenant_id, agent_id, spent_cost_usd, spent_tokens, reserved_cost_usd, reserved_tokens,
              steps_started, budget_warned
), opened AS (
    INSERT INTO checkpoints (tenant_id, run_id, step_index, step_id, attempt, status, skill, worker)
    SELECT r.tenant_id, %(run)s, %(index)s, %(step_id)s, coalesce((SELECT attempt FROM last), 0) + 1,
           'running', %(skill)s, %(worker)s
    FROM r WHERE (SELECT status FROM last) IS DISTINCT FROM 'running'
    RETURNING id, attempt, deliveries
), taken AS (
    UPDATE checkpoints SET deliveries = checkpoints.deliveries + 1, worker = %(worker)s
    FROM r WHERE checkpoints.id = (SELECT id FROM last) AND (SELECT status FROM last) = 'running'
    RETURNING checkpoints.id, checkpoints.attempt, checkpoints.deliveries
), cp AS (
    SELECT * FROM opened UNION ALL SELECT * FROM taken
), events AS (
    INSERT INTO run_events (tenant_id, run_id, type, step_id, data)
    SELECT r.tenant_id, %(run)s, e.type, e.step_id, e.data
    FROM r, cp, LATERAL (VALUES
        (1, 'run.started', NULL, '{}'::jsonb, (SELECT status FROM prior) = 'queued'),
        (2, CASE WHEN (SELECT status FROM last) = 'running' THEN 'step.redelivered' ELSE 'step.started' END,
         %(step_id)s, jsonb_build_object('attempt', cp.attempt, 'worker', %(worker)s), true)
    ) AS e(ord, type, step_id, data, wanted)
    WHERE e.wanted ORDER BY e.ord
)
SELECT r.*, cp.id AS checkpoint_id, cp.attempt, cp.deliveries,
       (SELECT status FROM last) IS NOT DISTINCT FROM 'running' AS redelivered,
       (SELECT status FROM prior) AS prior_status,
       CASE WHEN r.agent_id IS NOT NULL THEN (SELECT capabilities FROM agents WHERE id = r.agent_id) END
           AS capabilities
FROM r, cp
"""

_RESERVE_DAY = """
INSERT INTO tenant_daily_spend AS d (tenant_id, day, reserved_cost_usd)
SELECT t.id, %(day)s, %(cost)s FROM tenants t
WHERE t.id = %(tenant)s AND (t.daily_budget_usd IS NULL OR %(cost)s <= t.daily_budget_usd)
ON CONFLICT (tenant_id, day) DO UPDATE SET reserved_cost_usd = d.reserved_cost_usd + EXCLUDED.reserved_cost_usd
WHERE d.spent_cost_usd + d.reserved_cost_usd + EXCLUDED.reserved_cost_usd
      <= coalesce((SELECT daily_budget_usd FROM tenants WHERE id = d.tenant_id), 'Infinity'::numeric)
RETURNING d.tenant_id
"""

_SETTLE = """
WITH r AS (
    UPDATE runs SET
        version = version + 1, lease_owner = NULL, lease_expires_at = NULL, heartbeat_at = now(), updated_at = now(),
        status = %(status)s, next_step = %(next_step)s, wake_at = %(wake_at)s,
        finished_at = CASE WHEN %(final)s THEN now() END,
        error_code = %(error_code)s, error_message = %(error_message)s,
        reserved_cost_usd = greatest(reserved_cost_usd - %(reserved_cost)s, 0),
        reserved_tokens = greatest(reserved_tokens - %(reserved_tokens)s, 0),
        spent_cost_usd = spent_cost_usd + %(cost)s, spent_tokens = spent_tokens + %(tokens)s,
        budget_warned = budget_warned OR %(warned)s
    WHERE id = %(run)s AND version = %(version)s AND lease_owner IS NOT DISTINCT FROM %(lease_owner)s
    RETURNING tenant_id
), checkpoint AS (
    UPDATE checkpoints SET
        status = %(cp_status)s, args = %(args)s::jsonb, args_hash = %(args_hash)s, outcome = %(outcome)s::jsonb,
        raw = %(raw)s::jsonb, fallback_from = %(fallback_from)s::jsonb, error_code = %(cp_error_code)s,
        cost_usd = %(cost)s, input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s,
        finished_at = now(), duration_ms = %(duration_ms)s
    FROM r WHERE checkpoints.id = %(checkpoint_id)s
), events AS (
    INSERT INTO run_events (tenant_id, run_id, type, step_id, data)
    SELECT r.tenant_id, %(run)s, e.item->>'type', e.item->>'step_id', e.item->'data'
    FROM r, jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(item, ord)
    ORDER BY e.ord
), outbox AS (
    INSERT INTO outbox (tenant_id, topic, payload)
    SELECT r.tenant_id, o.item->>'topic', o.item->'payload'
    FROM r, jsonb_array_elements(%(outbox)s::jsonb) WITH ORDINALITY AS o(item, ord)
    ORDER BY o.ord
), dead AS (
    INSERT INTO dead_letters (tenant_id, kind, run_id, step_id, payload, error_code, error_message, attempts)
    SELECT r.tenant_id, 'step', %(run)s, d.item->>'step_id', d.item->'payload', d.item->>'error_code',
           d.item->>'error_message', (d.item->>'attempts')::int
    FROM r, jsonb_array_elements(%(dead_letters)s::jsonb) AS d(item)
), day AS (
    INSERT INTO tenant_daily_spend AS t (tenant_id, day, spent_cost_usd, spent_tokens)
    SELECT r.tenant_id, %(day)s, %(cost)s, %(tokens)s FROM r WHERE %(touch_day)s
    ON CONFLICT (tenant_id, day) DO UPDATE SET
        reserved_cost_usd = greatest(t.reserved_cost_usd - %(reserved_cost)s, 0),
        spent_cost_usd = t.spent_cost_usd + EXCLUDED.spent_cost_usd,
        spent_tokens = t.spent_tokens + EXCLUDED.spent_tokens
)
SELECT count(*) AS settled FROM r
"""

_RUN_STATE = """
SELECT r.status, r.next_step, r.step_count, r.version, r.lease_owner, r.lease_expires_at, now() AS now,
       r.started_at, r.tenant_id, r.max_wall_s, r.max_cost_usd, r.max_tokens, r.max_steps,
       r.spent_cost_usd, r.spent_tokens, r.reserved_cost_usd, r.reserved_tokens, r.steps_started,
       (SELECT c.status FROM checkpoints c WHERE c.run_id = r.id AND c.step_index = %(index)s
        ORDER BY c.attempt DESC LIMIT 1) AS last_status
FROM runs r WHERE r.id = %(run)s
"""

_RUN_PLAN = """
SELECT tenant_id, agent_id, replay_of, plan, inputs, skill_versions, step_count,
       max_cost_usd, max_tokens, max_steps, max_wall_s
FROM runs WHERE id = %(run)s
"""

_RUN_STATUS = "SELECT status FROM runs WHERE id = %(run)s"

_OUTPUTS = """
SELECT step_id, outcome->'output' AS output FROM checkpoints
WHERE run_id = %(run)s AND step_id = ANY(%(step_ids)s) AND status IN ('succeeded', 'skipped')
"""

_REPLAY_CALL = """
SELECT call FROM golden_replay_calls
WHERE run_id = %(run)s AND step_id = %(step_id)s AND attempt = %(attempt)s AND role = %(role)s
"""


def session_connection(s: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under a session, inside the session's transaction."""
    return s.connection().connection.dbapi_connection  # type: ignore[return-value]


def _one(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> Row | None:
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseOperationalError(exc) from exc


@dataclass(frozen=True)
class ClaimRequest:
    run_id: uuid.UUID
    index: int
    step_id: str
    skill: str
    worker: str
    takeover: Sequence[str]  # lease owners this delivery may take over at once: itself and those it retries
    lease_s: float
    cost_usd: Decimal
    tokens: int


def claim(conn: psycopg.Connection[Any], req: ClaimRequest) -> Row | None:
    """Take the step; the claimed row (run spend, attempt, checkpoint id, agent capabilities), or None
    when the fence does not hold (``run_state`` then tells why)."""
    return _one(conn, _CLAIM, {
        "run": req.run_id, "index": req.index, "step_id": req.step_id, "skill": req.skill, "worker": req.worker,
        "mine": [req.worker, *req.takeover], "lease_s": req.lease_s, "cost": req.cost_usd, "tokens": req.tokens})


def reserve_tenant_day(conn: psycopg.Connection[Any], tenant_id: uuid.UUID, day: date, cost_usd: Decimal) -> bool:
    """Reserve on the tenant's budget for the day (unlimited when the tenant has none)."""
    return _one(conn, _RESERVE_DAY, {"tenant": tenant_id, "day": day, "cost": cost_usd}) is not None


@dataclass(frozen=True)
class Settlement:
    """Everything one settle writes. JSON fields are serialised text (or None)."""

    run_id: uuid.UUID
    version: int                      # the fence: the run's version …
    lease_owner: str | None           # … and lease owner as this delivery left or saw them
    status: str                       # the run's status afterwards
    next_step: int
    final: bool = False
    wake_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    warned: bool = False
    # the attempt's checkpoint (None: no attempt was opened)
    checkpoint_id: int | None = None
    checkpoint_status: str | None = None
    checkpoint_error_code: str | None = None
    args: str | None = None
    args_hash: str | None = None
    outcome: str | None = None
    raw: str | None = None
    fallback_from: str | None = None
    duration_ms: float | None = None
    # spend: the reservation released, what was really spent
    reserved_cost_usd: Decimal = Decimal(0)
    reserved_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    day: date | None = None
    # rows implied by the outcome, as JSON arrays
    events: str = "[]"
    outbox: str = "[]"
    dead_letters: str = "[]"


def settle(conn: psycopg.Connection[Any], st: Settlement) -> bool:
    """Write a settlement; False when its fence no longer holds (nothing was written)."""
    touch_day = st.day is not None and (st.reserved_cost_usd > 0 or st.cost_usd > 0
                                        or st.input_tokens + st.output_tokens > 0)
    row = _one(conn, _SETTLE, {
        "run": st.run_id, "version": st.version, "lease_owner": st.lease_owner, "status": st.status,
        "next_step": st.next_step, "final": st.final, "wake_at": st.wake_at, "error_code": st.error_code,
        "error_message": st.error_message, "warned": st.warned,
        "checkpoint_id": st.checkpoint_id, "cp_status": st.checkpoint_status,
        "cp_error_code": st.checkpoint_error_code, "args": st.args, "args_hash": st.args_hash,
        "outcome": st.outcome, "raw": st.raw, "fallback_from": st.fallback_from, "duration_ms": st.duration_ms,
        "reserved_cost": st.reserved_cost_usd, "reserved_tokens": st.reserved_tokens, "cost": st.cost_usd,
        "tokens": st.input_tokens + st.output_tokens, "input_tokens": st.input_tokens,
        "output_tokens": st.output_tokens, "day": st.day, "touch_day": touch_day,
        "events": st.events, "outbox": st.outbox, "dead_letters": st.dead_letters})
    return bool(row and row["settled"])


def run_state(conn: psycopg.Connection[Any], run_id: uuid.UUID, index: int) -> Row | None:
    """The run as it is now, and the status of step ``index``'s latest attempt: why a claim did not hold."""
    return _one(conn, _RUN_STATE, {"run": run_id, "index": index})


def run_plan(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> Row | None:
    """What never changes about a run after submission: its plan, inputs, pinned skills, limits."""
    return _one(conn, _RUN_PLAN, {"run": run_id})


def run_status(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> str | None:
    row = _one(conn, _RUN_STATUS, {"run": run_id})
    return row["status"] if row else None


def outputs(conn: psycopg.Connection[Any], run_id: uuid.UUID, step_ids: Sequence[str]) -> dict[str, Any]:
    """The outputs of the run's finished steps among ``step_ids``."""
    try:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(_OUTPUTS, {"run": run_id, "step_ids": list(step_ids)})
            return {sid: out for sid, out in cur.fetchall()}
    except psycopg.OperationalError as exc:
        raise DatabaseOperationalError(exc) from exc


def replay_call(conn: psycopg.Connection[Any], run_id: uuid.UUID, step_id: str, attempt: int,
                role: str) -> dict[str, Any] | None:
    """The recorded call a golden replay run answers this attempt from (None: not recorded)."""
    row = _one(conn, _REPLAY_CALL, {"run": run_id, "step_id": step_id, "attempt": attempt, "role": role})
    return row["call"] if row else None
