"""The step path's statements: a step is claimed in one round trip and settled in one.

Each statement is a single SQL command whose data-modifying CTEs all hang off the fenced
``UPDATE runs``: when the fence does not hold (another delivery owns the step, the run was
cancelled, the version moved on), the run row is not changed and nothing else is written.

- ``claim``: one HOT update of the run row: takes the lease of the run's current step (version
  bump), opens the step's attempt on the row (``attempt``, ``attempt_open``, when, how many
  deliveries) — or takes over the open attempt of a dead delivery, so its idempotency key stays
  the same, recording ``step.redelivered`` — counts a new attempt in ``steps_started``, reserves the
  step's estimate on the run's budget (refusing it past a limit), and records ``run.started`` on a
  run's start. The attempt's ``step.started`` event is the row's ``attempt_event_id``, not a row.
  An open attempt that already took ``poison`` deliveries is not taken over (they all died): the
  caller quarantines the step instead. The claim holds only for the plan revision the claimer holds
  (``runs.plan_revision``: a person amended a step since it cached the plan), so a stale plan never runs.
  The common case (the next step, or a retry, of a running run) is a plain ``UPDATE``; the full
  statement runs when that one does not hold.
- ``settle``: inserts the attempt's checkpoint (the attempt as it ended: an attempt row exists only
  once it finished), closes the attempt and moves the run on (next step, retry wake-up, or a final
  status), replaces the reservation by what the step spent (run and tenant day), and inserts the
  events, webhook outbox rows and dead letters the outcome implies; a plain success is the
  checkpoint's ``finished_event_id`` (the timeline's ``step.succeeded``).

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
from sqlalchemy.orm import Session

from aos.db.statements import Statement

Row = dict[str, Any]

_CLAIM = Statement("""
WITH prior AS (
    SELECT status FROM runs WHERE id = %(run)s
), r AS (
    UPDATE runs SET
        status = 'running', version = version + 1, lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease_s)s), heartbeat_at = now(), wake_at = NULL,
        started_at = coalesce(started_at, now()), updated_at = now(),
        -- an open attempt is a dead (or abandoned) delivery's: taken over, same attempt and idempotency key
        attempt = CASE WHEN attempt_open THEN attempt ELSE attempt + 1 END,
        attempt_started_at = CASE WHEN attempt_open THEN attempt_started_at ELSE now() END,
        attempt_deliveries = CASE WHEN attempt_open THEN attempt_deliveries + 1 ELSE 1 END,
        -- the attempt's step.started event; when the run is starting too it is a row of its own, after run.started
        attempt_event_id = CASE WHEN attempt_open THEN attempt_event_id
                                WHEN status = 'queued' THEN NULL
                                ELSE nextval('run_events_id_seq'::regclass) END,
        attempt_open = true,
        steps_started = steps_started + CASE WHEN attempt_open THEN 0 ELSE 1 END,
        reserved_cost_usd = reserved_cost_usd + CASE WHEN attempt_open THEN 0 ELSE %(cost)s END,
        reserved_tokens = reserved_tokens + CASE WHEN attempt_open THEN 0 ELSE %(tokens)s END
    WHERE id = %(run)s AND status IN ('queued', 'running') AND next_step = %(index)s
      -- the plan the claimer holds is the run's current one (a person may have amended the step since)
      AND plan_revision = %(revision)s
      AND (lease_expires_at IS NULL OR lease_expires_at <= now()
           OR lease_owner = ANY(string_to_array(%(mine)s, E'\n')))
      -- an attempt whose deliveries kept dying is not taken over again: it is quarantined (poison)
      AND NOT (attempt_open AND attempt_deliveries >= %(poison)s)
      AND (max_wall_s IS NULL OR started_at IS NULL OR now() - started_at <= make_interval(secs => max_wall_s))
      AND (attempt_open OR (
               (max_cost_usd IS NULL OR spent_cost_usd + reserved_cost_usd + %(cost)s <= max_cost_usd)
           AND (max_tokens IS NULL OR spent_tokens + reserved_tokens + %(tokens)s <= max_tokens)
           AND (max_steps IS NULL OR steps_started + 1 <= max_steps)))
    RETURNING version, tenant_id, agent_id, spent_cost_usd, spent_tokens, reserved_cost_usd, reserved_tokens,
              steps_started, budget_warned, attempt, attempt_deliveries, attempt_event_id, retry_base
), events AS (
    -- each branch filters before it builds anything: most claims record no event
    INSERT INTO run_events (tenant_id, run_id, type, step_id, data)
    SELECT r.tenant_id, %(run)s, e.type, e.step_id, e.data
    FROM r, (SELECT 1, 'run.started', NULL, '{}'::jsonb WHERE (SELECT status FROM prior) = 'queued'
             UNION ALL
             SELECT 2, 'step.started', %(step_id)s, jsonb_build_object('attempt', r.attempt, 'worker', %(worker)s)
             FROM r WHERE r.attempt_deliveries = 1 AND r.attempt_event_id IS NULL
             UNION ALL
             SELECT 3, 'step.redelivered', %(step_id)s, jsonb_build_object('attempt', r.attempt, 'worker', %(worker)s)
             FROM r WHERE r.attempt_deliveries > 1) AS e(ord, type, step_id, data)
    ORDER BY e.ord
)
SELECT r.version, r.spent_cost_usd, r.spent_tokens, r.reserved_cost_usd, r.reserved_tokens, r.steps_started,
       r.budget_warned, r.attempt, r.retry_base, r.attempt_deliveries > 1 AS redelivered,
       CASE WHEN r.agent_id IS NOT NULL THEN (SELECT capabilities FROM agents WHERE id = r.agent_id) END
           AS capabilities
FROM r
""")

# The common claim, of a running run's next step or retry (no attempt open: nothing to take over, no
# event to record): one UPDATE. When it does not hold, ``_CLAIM`` decides (a start, a takeover, a refusal).
_CLAIM_NEXT = Statement("""
UPDATE runs SET
    version = version + 1, lease_owner = %(worker)s,
    lease_expires_at = now() + make_interval(secs => %(lease_s)s), heartbeat_at = now(), wake_at = NULL,
    updated_at = now(), attempt = attempt + 1, attempt_started_at = now(), attempt_deliveries = 1,
    attempt_event_id = nextval('run_events_id_seq'::regclass), attempt_open = true,
    steps_started = steps_started + 1,
    reserved_cost_usd = reserved_cost_usd + %(cost)s, reserved_tokens = reserved_tokens + %(tokens)s
WHERE id = %(run)s AND status = 'running' AND NOT attempt_open AND next_step = %(index)s
  AND plan_revision = %(revision)s
  AND (lease_expires_at IS NULL OR lease_expires_at <= now() OR lease_owner = ANY(string_to_array(%(mine)s, E'\n')))
  AND (max_wall_s IS NULL OR started_at IS NULL OR now() - started_at <= make_interval(secs => max_wall_s))
  AND (max_cost_usd IS NULL OR spent_cost_usd + reserved_cost_usd + %(cost)s <= max_cost_usd)
  AND (max_tokens IS NULL OR spent_tokens + reserved_tokens + %(tokens)s <= max_tokens)
  AND (max_steps IS NULL OR steps_started + 1 <= max_steps)
RETURNING version, spent_cost_usd, spent_tokens, reserved_cost_usd, reserved_tokens, steps_started, budget_warned,
          attempt, retry_base, false AS redelivered,
          CASE WHEN agent_id IS NOT NULL THEN (SELECT a.capabilities FROM agents a WHERE a.id = runs.agent_id) END
              AS capabilities
""")

_RESERVE_DAY = Statement("""
INSERT INTO tenant_daily_spend AS d (tenant_id, day, reserved_cost_usd)
SELECT t.id, %(day)s, %(cost)s FROM tenants t
WHERE t.id = %(tenant)s AND (t.daily_budget_usd IS NULL OR %(cost)s <= t.daily_budget_usd)
ON CONFLICT (tenant_id, day) DO UPDATE SET reserved_cost_usd = d.reserved_cost_usd + EXCLUDED.reserved_cost_usd
WHERE d.spent_cost_usd + d.reserved_cost_usd + EXCLUDED.reserved_cost_usd
      <= coalesce((SELECT daily_budget_usd FROM tenants WHERE id = d.tenant_id), 'Infinity'::numeric)
RETURNING d.tenant_id
""")

# The attempt's checkpoint, after the run's part (``r``) of either settle.
_CHECKPOINT = """
    INSERT INTO checkpoints (tenant_id, run_id, step_index, step_id, attempt, deliveries, status, skill, worker,
                             started_at, started_event_id, args, args_hash, outcome, raw, fallback_from, error_code,
                             cost_usd, input_tokens, output_tokens, finished_at, duration_ms, finished_event_id)
    SELECT r.tenant_id, %(run)s, %(cp_index)s, %(cp_step_id)s, %(cp_attempt)s, r.attempt_deliveries, %(cp_status)s::text,
           %(cp_skill)s, %(lease_owner)s, r.attempt_started_at, r.attempt_event_id, %(args)s::jsonb, %(args_hash)s,
           %(outcome)s::jsonb, %(raw)s::jsonb, %(fallback_from)s::jsonb, %(cp_error_code)s, %(cost)s,
           %(input_tokens)s, %(output_tokens)s, now(), %(duration_ms)s,
           CASE WHEN %(derived_success)s THEN nextval('run_events_id_seq'::regclass) END
    FROM r WHERE %(cp_status)s::text IS NOT NULL
    RETURNING id
)"""

# The settle, in parts: the run and the attempt's checkpoint always; the other rows only when the
# outcome has any (most steps have none), each combination its own prepared statement.
_SETTLE_PARTS = {
    "run": """r AS (
    UPDATE runs SET
        version = version + 1, lease_owner = NULL, lease_expires_at = NULL, heartbeat_at = now(), updated_at = now(),
        status = %(status)s, next_step = %(next_step)s, wake_at = %(wake_at)s,
        finished_at = CASE WHEN %(final)s THEN now() END,
        error_code = %(error_code)s, error_message = %(error_message)s,
        reserved_cost_usd = greatest(reserved_cost_usd - %(reserved_cost)s, 0),
        reserved_tokens = greatest(reserved_tokens - %(reserved_tokens)s, 0),
        spent_cost_usd = spent_cost_usd + %(cost)s, spent_tokens = spent_tokens + %(tokens)s,
        budget_warned = budget_warned OR %(warned)s,
        -- the attempt is closed by its checkpoint; the next step starts counting attempts again
        attempt_open = attempt_open AND %(cp_status)s::text IS NULL,
        attempt = CASE WHEN next_step <> %(next_step)s THEN 0 ELSE attempt END,
        retry_base = CASE WHEN next_step <> %(next_step)s THEN 0 ELSE retry_base END
    WHERE id = %(run)s AND version = %(version)s AND lease_owner IS NOT DISTINCT FROM %(lease_owner)s
    RETURNING tenant_id, attempt_started_at, attempt_deliveries, attempt_event_id
), checkpoint AS (""" + _CHECKPOINT,
    # A pure step of an unlimited run (``claimless``): no claim came first, so this one statement opens and
    # closes the attempt. Fenced by the run being at this step with no attempt of it yet and none open: a
    # duplicate, a cancel or a retry makes it write nothing (the caller then takes the claimed path).
    "run_claimless": """r AS (
    UPDATE runs SET
        version = version + 1, heartbeat_at = now(), updated_at = now(),
        status = %(status)s, next_step = %(next_step)s, wake_at = %(wake_at)s,
        finished_at = CASE WHEN %(final)s THEN now() END,
        error_code = %(error_code)s, error_message = %(error_message)s,
        spent_cost_usd = spent_cost_usd + %(cost)s, spent_tokens = spent_tokens + %(tokens)s,
        steps_started = steps_started + 1,
        attempt = CASE WHEN %(next_step)s::int <> %(cp_index)s::int THEN 0 ELSE 1 END
    WHERE id = %(run)s AND status = 'running' AND next_step = %(cp_index)s AND attempt = 0 AND NOT attempt_open
      AND (lease_expires_at IS NULL OR lease_expires_at <= now()) AND plan_revision = %(revision)s
    RETURNING tenant_id, %(started_at)s::timestamptz AS attempt_started_at, 1 AS attempt_deliveries,
              nextval('run_events_id_seq'::regclass) AS attempt_event_id
), checkpoint AS (""" + _CHECKPOINT,
    "events": """events AS (
    -- after checkpoint (it reads it): events that follow a derived step.succeeded get later ids
    INSERT INTO run_events (tenant_id, run_id, type, step_id, data)
    SELECT r.tenant_id, %(run)s, e.item->>'type', e.item->>'step_id', e.item->'data'
    FROM r CROSS JOIN (SELECT count(*) FROM checkpoint) AS after_checkpoint,
         jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(item, ord)
    ORDER BY e.ord
)""",
    "outbox": """outbox AS (
    INSERT INTO outbox (tenant_id, topic, payload)
    SELECT r.tenant_id, o.item->>'topic', o.item->'payload'
    FROM r, jsonb_array_elements(%(outbox)s::jsonb) WITH ORDINALITY AS o(item, ord)
    ORDER BY o.ord
)""",
    "dead": """dead AS (
    INSERT INTO dead_letters (tenant_id, kind, run_id, step_id, payload, error_code, error_message, attempts)
    SELECT r.tenant_id, 'step', %(run)s, d.item->>'step_id', d.item->'payload', d.item->>'error_code',
           d.item->>'error_message', (d.item->>'attempts')::int
    FROM r, jsonb_array_elements(%(dead_letters)s::jsonb) AS d(item)
)""",
    # a waiting step (issue 15): what the run now waits for; only waiting settlements carry it
    "wait": """wait AS (
    INSERT INTO run_waits (tenant_id, run_id, step_index, step_id, attempt, kind, signal, reason, payload_schema,
                           deadline)
    SELECT r.tenant_id, %(run)s, (w->>'step_index')::int, w->>'step_id', (w->>'attempt')::int, w->>'kind',
           w->>'signal', w->>'reason', nullif(w->'schema', 'null'::jsonb), (w->>'deadline')::timestamptz
    FROM r, (SELECT %(wait)s::jsonb AS w) AS spec
)""",
    "day": """day AS (
    INSERT INTO tenant_daily_spend AS t (tenant_id, day, spent_cost_usd, spent_tokens)
    SELECT r.tenant_id, %(day)s, %(cost)s, %(tokens)s FROM r
    ON CONFLICT (tenant_id, day) DO UPDATE SET
        reserved_cost_usd = greatest(t.reserved_cost_usd - %(reserved_cost)s, 0),
        spent_cost_usd = t.spent_cost_usd + EXCLUDED.spent_cost_usd,
        spent_tokens = t.spent_tokens + EXCLUDED.spent_tokens
)""",
}
_settles: dict[tuple[str, ...], Statement] = {}


def _settle_statement(parts: tuple[str, ...]) -> Statement:
    """``parts``: the run's part ("run" or "run_claimless") and the optional ones."""
    stmt = _settles.get(parts)
    if stmt is None:
        body = ",\n".join(_SETTLE_PARTS[p] for p in parts)
        stmt = _settles[parts] = Statement(f"WITH {body}\nSELECT count(*) AS settled FROM r")
    return stmt

_RUN_STATE = Statement("""
SELECT r.status, r.next_step, r.step_count, r.version, r.lease_owner, r.lease_expires_at, now() AS now,
       r.started_at, r.tenant_id, r.max_wall_s, r.max_cost_usd, r.max_tokens, r.max_steps,
       r.spent_cost_usd, r.spent_tokens, r.reserved_cost_usd, r.reserved_tokens, r.steps_started, r.attempt_open,
       r.attempt, r.attempt_deliveries, r.plan_revision,
       (SELECT c.status FROM checkpoints c WHERE c.run_id = r.id AND c.step_index = %(index)s
        ORDER BY c.attempt DESC LIMIT 1) AS last_status
FROM runs r WHERE r.id = %(run)s
""")

_RUN_PLAN = Statement("""
SELECT tenant_id, agent_id, replay_of, plan, inputs, skill_versions, step_count, plan_revision,
       max_cost_usd, max_tokens, max_steps, max_wall_s, concurrency IS NOT NULL AS limited
FROM runs WHERE id = %(run)s
""")

_RUN_STATUS = Statement("SELECT status, plan_revision FROM runs WHERE id = %(run)s")

_OUTPUTS = Statement("""
SELECT step_id, outcome->'output' AS output FROM checkpoints
WHERE run_id = %(run)s AND step_id = ANY(%(step_ids)s) AND status IN ('succeeded', 'skipped')
""")

# the latest wait of a waiting step's attempt: read only by steps of waiting skills
_STEP_WAIT = Statement("""
SELECT id, kind, signal, status, payload, deadline FROM run_waits
WHERE run_id = %(run)s AND step_index = %(index)s AND attempt = %(attempt)s
ORDER BY id DESC LIMIT 1
""")

# A step that may not call its upstream now (an open circuit): the claim is given back without spending
# the attempt — it stays open, its reservation held, for the retry to take over as the same attempt (its
# deliveries count restarts, so the takeover is not reported as a redelivery) — and the run sleeps until
# the wake-up; fenced like a settle.
_DEFER = Statement("""
WITH r AS (
    UPDATE runs SET version = version + 1, lease_owner = NULL, lease_expires_at = NULL, heartbeat_at = now(),
                    updated_at = now(), wake_at = %(wake_at)s, attempt_deliveries = 0
    WHERE id = %(run)s AND version = %(version)s AND lease_owner IS NOT DISTINCT FROM %(lease_owner)s
    RETURNING tenant_id
), events AS (
    INSERT INTO run_events (tenant_id, run_id, type, step_id, data)
    SELECT r.tenant_id, %(run)s, e.item->>'type', e.item->>'step_id', e.item->'data'
    FROM r, jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(item, ord)
    ORDER BY e.ord
)
SELECT count(*) AS settled FROM r
""")

_REPLAY_CALL = Statement("""
SELECT call FROM golden_replay_calls
WHERE run_id = %(run)s AND step_id = %(step_id)s AND attempt = %(attempt)s AND role = %(role)s
""")


def session_connection(s: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under a session, inside the session's transaction."""
    return s.connection().connection.dbapi_connection  # type: ignore[return-value]


@dataclass(slots=True)
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
    poison: int = 1_000_000  # deliveries of one attempt after which it is no longer taken over
    plan_revision: int = 0   # the revision of the plan the claimer holds (runs.plan_revision fences it)


def claim(conn: psycopg.Connection[Any], req: ClaimRequest) -> Row | None:
    """Take the step; the claimed row (run spend, the open attempt, agent capabilities), or None when the
    fence does not hold (``run_state`` then tells why)."""
    values = {
        "run": req.run_id, "index": req.index, "step_id": req.step_id, "skill": req.skill, "worker": req.worker,
        # one text of the owners it may take over, newline-separated (a delivery id never holds one)
        "mine": "\n".join([req.worker, *req.takeover]),
        "lease_s": req.lease_s, "cost": req.cost_usd, "tokens": req.tokens, "poison": req.poison,
        "revision": req.plan_revision}
    if req.index > 0:  # step 0 is a run's start: straight to the full claim
        row = _CLAIM_NEXT.one(conn, **values)
        if row is not None:
            return row
    return _CLAIM.one(conn, **values)


def reserve_tenant_day(conn: psycopg.Connection[Any], tenant_id: uuid.UUID, day: date, cost_usd: Decimal) -> bool:
    """Reserve on the tenant's budget for the day (unlimited when the tenant has none)."""
    return _RESERVE_DAY.one(conn, **{"tenant": tenant_id, "day": day, "cost": cost_usd}) is not None


@dataclass(slots=True)
class OpenAttempt:
    """The attempt a claim opened (or took over); the run row keeps when it started, how many deliveries
    it took and its step.started event id, which its checkpoint copies when it ends."""

    index: int
    step_id: str
    skill: str
    attempt: int
    retry_base: int = 0  # the attempt the step's retry budget counts from (a resume or replay restarts it)

    @property
    def tries(self) -> int:
        """This attempt's place in the step's retry budget (1 = its first try)."""
        return self.attempt - self.retry_base


@dataclass(slots=True)
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
    attempt: OpenAttempt | None = None
    checkpoint_status: str | None = None
    checkpoint_error_code: str | None = None
    derived_success: bool = False     # the checkpoint holds the attempt's step.succeeded event (timeline)
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
    wait: str | None = None           # the wait a waiting settlement opens (JSON), see _SETTLE_PARTS["wait"]
    # no claim came first (a pure step of an unlimited run): the settle opens the attempt too, fenced by the
    # run being at the step with no attempt yet; ``started_at`` is when the delivery began
    claimless: bool = False
    started_at: datetime | None = None
    plan_revision: int = 0            # a claimless settle's fence: the plan it ran the step from is the run's


def settle(conn: psycopg.Connection[Any], st: Settlement) -> bool:
    """Write a settlement; False when its fence no longer holds (nothing was written)."""
    a = st.attempt
    touch_day = st.day is not None and (st.reserved_cost_usd > 0 or st.cost_usd > 0
                                        or st.input_tokens + st.output_tokens > 0)
    parts = ("run_claimless" if st.claimless else "run",) + tuple(
        name for name, wanted in (("events", st.events != "[]"), ("outbox", st.outbox != "[]"),
                                  ("dead", st.dead_letters != "[]"), ("wait", st.wait is not None),
                                  ("day", touch_day)) if wanted)
    row = _settle_statement(parts).one(conn, **{
        "run": st.run_id, "version": st.version, "lease_owner": st.lease_owner, "status": st.status,
        "next_step": st.next_step, "final": st.final, "wake_at": st.wake_at, "error_code": st.error_code,
        "error_message": st.error_message, "warned": st.warned,
        "cp_status": st.checkpoint_status if a is not None else None,
        "cp_index": a.index if a else None, "cp_step_id": a.step_id if a else None,
        "cp_attempt": a.attempt if a else None, "cp_skill": a.skill if a else None,
        "cp_error_code": st.checkpoint_error_code, "derived_success": st.derived_success, "args": st.args,
        "args_hash": st.args_hash, "outcome": st.outcome, "raw": st.raw, "fallback_from": st.fallback_from,
        "duration_ms": st.duration_ms, "reserved_cost": st.reserved_cost_usd, "reserved_tokens": st.reserved_tokens,
        "cost": st.cost_usd, "tokens": st.input_tokens + st.output_tokens, "input_tokens": st.input_tokens,
        "output_tokens": st.output_tokens, "day": st.day, "events": st.events, "outbox": st.outbox,
        "dead_letters": st.dead_letters, "wait": st.wait, "started_at": st.started_at,
        "revision": st.plan_revision})
    return bool(row and row["settled"])


def run_state(conn: psycopg.Connection[Any], run_id: uuid.UUID, index: int) -> Row | None:
    """The run as it is now, and the status of step ``index``'s latest attempt: why a claim did not hold."""
    return _RUN_STATE.one(conn, **{"run": run_id, "index": index})


def run_plan(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> Row | None:
    """What a worker holds of a run: its plan (and the plan's revision), inputs, pinned skills, limits."""
    return _RUN_PLAN.one(conn, **{"run": run_id})


def run_status(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> tuple[str, int] | None:
    """The run's status and plan revision (None: no such run)."""
    row = _RUN_STATUS.one(conn, **{"run": run_id})
    return (row["status"], row["plan_revision"]) if row else None


def outputs(conn: psycopg.Connection[Any], run_id: uuid.UUID, step_ids: Sequence[str]) -> dict[str, Any]:
    """The outputs of the run's finished steps among ``step_ids``."""
    return {sid: out for sid, out in _OUTPUTS.rows(conn, run=run_id, step_ids=list(step_ids))}


def step_wait(conn: psycopg.Connection[Any], run_id: uuid.UUID, index: int, attempt: int) -> Row | None:
    """The latest wait of this attempt of a waiting step (None: it has not waited yet)."""
    return _STEP_WAIT.one(conn, **{"run": run_id, "index": index, "attempt": attempt})


def defer(conn: psycopg.Connection[Any], run_id: uuid.UUID, version: int, lease_owner: str, wake_at: datetime,
          events: str) -> bool:
    """Give a claimed step back without spending its attempt (see ``_DEFER``); False: the fence moved."""
    row = _DEFER.one(conn, **{"run": run_id, "version": version, "lease_owner": lease_owner, "wake_at": wake_at,
                              "events": events})
    return bool(row and row["settled"])


def replay_call(conn: psycopg.Connection[Any], run_id: uuid.UUID, step_id: str, attempt: int,
                role: str) -> dict[str, Any] | None:
    """The recorded call a golden replay run answers this attempt from (None: not recorded)."""
    row = _REPLAY_CALL.one(conn, **{"run": run_id, "step_id": step_id, "attempt": attempt, "role": role})
    return row["call"] if row else None
