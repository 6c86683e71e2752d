"""Concurrency limits: how many of a tenant's runs may hold a slot at once, in all and per group.

Two kinds of limit apply to a run (docs/concurrency.md):

- the tenant's cap (``tenants.max_running_runs``, else ``AOS_TENANT_MAX_RUNNING_RUNS``) on all of its
  runs that hold a slot;
- the ``concurrency`` of its workflow (or ad-hoc plan) and of its agent: at most ``limit`` runs of that
  group at once, or per value of ``key`` (an expression over the inputs) — each a group of its own.

A run holds a slot while it is ``queued`` (dispatched) or ``running`` and not waiting
(``waiting_since IS NULL``). Slots are counted from the runs themselves, never kept in a counter: the
update that makes a run final is the release, so no crash can leak a slot, and no path that finishes a
run can forget to give one back. A run that a limit applies to is stored waiting (no enqueue) and
``admit`` gives slots to waiting runs, oldest wait first, each that fits every limit it counts in; it
runs in the transaction that queued or finished a limited run (submission, the final settle of a step,
cancel, resume), under the tenant's advisory lock, so two transactions never hand out the same slot.
Admitted runs get their ``run.enqueue`` outbox row in that same transaction: the broker only ever sees
runs that may start, and nothing polls it. The reaper also calls ``admit`` for tenants that have
waiting runs (a tenant's cap raised, a run finished by a path that had no limit when it was queued).

Lock order: a transaction changes its run row(s) first, then takes the tenant's lock; ``admit`` skips
waiting rows locked by another transaction (that one runs ``admit`` itself once it holds the lock), so
it never waits on a row while holding the lock.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from aos.config import get_settings
from aos.db.models import ENQUEUE_TOPIC
from aos.db.statements import Statement
from aos.plan import Plan
from aos.plan.model import Concurrency
from aos.plan.refs import as_text, compile_expr

# How many waiting runs one pass looks at: runs blocked by their own group are passed over, so a long
# line behind one busy key does not hide the others for ever (the next pass looks again).
SCAN = 500
GROUP_VALUE_CHARS = 200  # a key's value longer than this is named by its SHA-256 in the group

_LOCK = Statement("SELECT pg_advisory_xact_lock(hashtextextended('aos.concurrency:' || %(tenant)s::text, 0))")

_WAITING = Statement("""
SELECT id, concurrency FROM runs
WHERE tenant_id = %(tenant)s AND waiting_since IS NOT NULL AND status = 'queued'
ORDER BY waiting_since, id LIMIT %(scan)s
""")

# the tenant's slots in use: the total (grp NULL, with the tenant's own cap) and per group
_HELD = Statement("""
SELECT NULL::text AS grp, count(*) AS n, (SELECT max_running_runs FROM tenants WHERE id = %(tenant)s) AS cap
FROM runs WHERE tenant_id = %(tenant)s AND status IN ('queued', 'running') AND waiting_since IS NULL
UNION ALL
SELECT g->>'group', count(*), NULL
FROM runs r CROSS JOIN LATERAL jsonb_array_elements(r.concurrency) AS g
WHERE r.tenant_id = %(tenant)s AND r.status IN ('queued', 'running') AND r.waiting_since IS NULL
  AND r.concurrency IS NOT NULL
GROUP BY 1
""")

_ADMIT = Statement("""
WITH a AS (
    UPDATE runs SET waiting_since = NULL, updated_at = now()
    WHERE id IN (SELECT id FROM runs WHERE id = ANY(%(ids)s::uuid[]) AND status = 'queued'
                 AND waiting_since IS NOT NULL FOR UPDATE SKIP LOCKED)
    RETURNING id, tenant_id, next_step, wake_at
)
-- a run resumed with a delay (an applied suggestion's delay_s: its wake_at) is published no earlier
INSERT INTO outbox (tenant_id, topic, payload, next_attempt_at)
SELECT a.tenant_id, %(topic)s, jsonb_build_object('run_id', a.id::text, 'from_step', a.next_step),
       greatest(now(), a.wake_at) FROM a
RETURNING (payload->>'run_id')::uuid AS run_id, id
""")

_TENANTS_WAITING = Statement("SELECT DISTINCT tenant_id FROM runs WHERE waiting_since IS NOT NULL AND status = 'queued'")


def tenant_cap(own: int | None) -> int | None:
    """The cap that applies to a tenant whose own setting is ``own`` (None: no cap)."""
    if own is not None:
        return own
    return get_settings().tenant_max_running_runs or None


def _group(scope: str, c: Concurrency, inputs: dict[str, Any]) -> dict[str, Any]:
    name = scope
    if c.key is not None:
        value = as_text(compile_expr(c.key).search({"inputs": inputs}))
        if len(value) > GROUP_VALUE_CHARS:
            value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        name = f"{scope}|{c.key}={value}"
    return {"group": name, "limit": c.limit}


def groups_for(plan: Plan, *, scope: str | None, agent_id: uuid.UUID | None,
               agent_capabilities: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The groups a run of ``plan`` counts in: its workflow's (``scope``, e.g. ``workflow:<name>``; an ad-hoc
    plan's is ``plan:<name or hash>``) and its agent's, each ``{"group", "limit"}``."""
    groups = []
    if plan.concurrency is not None:
        groups.append(_group(scope or f"plan:{plan.name or plan.hash}", plan.concurrency, plan.inputs))
    raw = (agent_capabilities or {}).get("concurrency")
    if agent_id is not None and isinstance(raw, dict) and isinstance(raw.get("limit"), int):
        groups.append(_group(f"agent:{agent_id}", Concurrency(limit=raw["limit"], key=raw.get("key")), plan.inputs))
    return groups


def run_concurrency(groups: list[dict[str, Any]], cap: int | None) -> str | None:
    """``runs.concurrency`` as JSON text: None when no limit applies (the run never waits)."""
    if not groups and cap is None:
        return None
    return json.dumps(groups, separators=(",", ":"), ensure_ascii=False)


def admit(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Give free slots to the tenant's waiting runs, in the order they started waiting; the admitted runs
    and the ids of their ``run.enqueue`` outbox rows (written in the caller's transaction: deliver them
    after its commit, or leave them to the drain)."""
    _LOCK.run(conn, tenant=tenant_id)
    waiting = _WAITING.rows(conn, tenant=tenant_id, scan=SCAN)
    if not waiting:
        return {}
    held: Counter[str] = Counter()
    total, cap = 0, None
    for grp, n, own_cap in _HELD.rows(conn, tenant=tenant_id):
        if grp is None:
            total, cap = n, tenant_cap(own_cap)
        else:
            held[grp] = n
    chosen = []
    for run_id, groups in waiting:
        if cap is not None and total >= cap:
            break
        groups = groups or []
        if all(held[g["group"]] < g["limit"] for g in groups):
            chosen.append(run_id)
            total += 1
            held.update(g["group"] for g in groups)
    if not chosen:
        return {}
    return dict(_ADMIT.rows(conn, ids=chosen, topic=ENQUEUE_TOPIC))


def tenants_waiting(conn: psycopg.Connection[Any]) -> list[uuid.UUID]:
    """Tenants that have runs waiting for a slot (the reaper's safety pass)."""
    return [row[0] for row in _TENANTS_WAITING.rows(conn)]


def admit_all_waiting(conn_factory: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]) -> list[int]:
    """``admit`` for every tenant with waiting runs, each in its own transaction; the outbox ids."""
    with conn_factory() as conn:
        tenants = tenants_waiting(conn)
    admitted: list[int] = []
    for tenant in tenants:
        with conn_factory() as conn, conn.transaction():
            admitted.extend(admit(conn, tenant).values())
    return admitted
