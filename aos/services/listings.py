"""What operators list: dead letters, the outbox's state, leases, schedules — read straight through psycopg.

These are read by `aos dlq list`, `aos outbox status`, `aos locks list` and `aos schedules list`, each a new
process that a person waits for; importing SQLAlchemy and the ORM models alone takes longer (0.4 s of CPU)
than the whole command may (issue 12: under 0.5 s). So the queries here are plain SQL on the engine's direct
connections (``aos.db.direct``), in the caller's scope (row-level security applies as everywhere: the CLI
reads as the operator, an API request as its tenant), and this module imports nothing of SQLAlchemy. The
API and the console list through the same functions, so each listing is written once.

The views (``dead_letter_view``, ``schedule_view``) read attributes, so the services pass their ORM rows to
the same functions that shape the rows read here.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from aos.db import direct
from aos.db.statements import Statement
from aos.db.vocabulary import DEAD_LETTER_KINDS, DEAD_LETTER_STATUSES
from aos.errors import AosError
from aos.runtime.catalog import CATALOG
from aos.services.pagination import check_limit, decode_cursor, encode_cursor

# --- tenants ---------------------------------------------------------------------------------------------

_TENANT_BY_NAME = Statement("SELECT id FROM tenants WHERE name = %(name)s")


def no_such_tenant(name: str) -> AosError:
    """NOT_FOUND for a tenant name, with the command that makes one (also ``tenancy.get_tenant_by_name``'s)."""
    return AosError("NOT_FOUND", f"no tenant named {name!r}; create it with `aos tenants create {name}`")


def tenant_id_by_name(name: str) -> uuid.UUID:
    """The id of the tenant called ``name`` (``no_such_tenant`` when there is none)."""
    with direct.relaxed() as conn:
        row = _TENANT_BY_NAME.one(conn, name=name)
    if row is None:
        raise no_such_tenant(name)
    return row["id"]


# --- dead letters ----------------------------------------------------------------------------------------


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt else None


def dead_letter_view(dl: Any, replay: Any | None = None) -> dict[str, Any]:
    """A dead letter as the API, the console and the CLI show it (``replay``: its replay log row, if any)."""
    entry = CATALOG.get(dl.error_code) if dl.error_code in CATALOG else CATALOG.fallback
    return {
        "id": dl.id, "kind": dl.kind, "status": dl.status,
        "run_id": str(dl.run_id) if dl.run_id else None, "step_id": dl.step_id,
        "error": {"code": dl.error_code, "message": dl.error_message, "category": str(entry.category),
                  "retryable": entry.retryable},
        "attempts": dl.attempts, "payload": dl.payload,
        "created_at": _iso(dl.created_at), "resolved_at": _iso(dl.resolved_at),
        "replay": {"result": replay.result, "replayed_at": _iso(replay.replayed_at)} if replay else None,
    }


_DEAD_LETTER_FILTERS = {"tenant": "dl.tenant_id = %(tenant)s", "status": "dl.status = %(status)s",
                        "kind": "dl.kind = %(kind)s", "cursor": "(dl.created_at, dl.id) < (%(at)s, %(key)s)"}
# one statement per set of filters given: a generic plan of "x IS NULL OR …" would not use the indexes
_dead_letter_pages: dict[frozenset[str], Statement] = {}


def _dead_letter_page(filters: frozenset[str]) -> Statement:
    stmt = _dead_letter_pages.get(filters)
    if stmt is None:
        where = " AND ".join(_DEAD_LETTER_FILTERS[f] for f in sorted(filters)) or "true"
        stmt = _dead_letter_pages[filters] = Statement(
            "SELECT dl.id, dl.kind, dl.status, dl.run_id, dl.step_id, dl.error_code, dl.error_message, "
            "dl.attempts, dl.payload, dl.created_at, dl.resolved_at, rl.result, rl.replayed_at "
            "FROM dead_letters dl LEFT JOIN replay_log rl ON rl.dead_letter_id = dl.id "
            f"WHERE {where} ORDER BY dl.created_at DESC, dl.id DESC LIMIT %(n)s")
    return stmt


def dead_letters(tenant_id: uuid.UUID | None, *, status: str | None = None, kind: str | None = None,
                 limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """A page of dead letters, newest first: ``{"items", "next_cursor"}`` (``tenant_id`` None: every tenant's
    the caller's scope lets it see)."""
    if status is not None and status not in DEAD_LETTER_STATUSES:
        raise AosError("VALIDATION_ERROR", f"status must be one of {', '.join(DEAD_LETTER_STATUSES)}")
    if kind is not None and kind not in DEAD_LETTER_KINDS:
        raise AosError("VALIDATION_ERROR", f"kind must be one of {', '.join(DEAD_LETTER_KINDS)}")
    check_limit(limit)
    values: dict[str, Any] = {"tenant": tenant_id, "status": status, "kind": kind, "n": limit + 1}
    if cursor:
        values["at"], values["key"] = decode_cursor(cursor, int)
    stmt = _dead_letter_page(frozenset(k for k in ("tenant", "status", "kind") if values[k] is not None)
                             | ({"cursor"} if cursor else set()))
    with direct.relaxed() as conn:
        rows = stmt.rows(conn, **values)
    items = []
    for (dl_id, kind_, status_, run_id, step_id, code, message, attempts, payload, created_at, resolved_at,
         replay_result, replayed_at) in rows[:limit]:
        dl = SimpleNamespace(id=dl_id, kind=kind_, status=status_, run_id=run_id, step_id=step_id, error_code=code,
                             error_message=message, attempts=attempts, payload=payload, created_at=created_at,
                             resolved_at=resolved_at)
        replay = SimpleNamespace(result=replay_result, replayed_at=replayed_at) if replay_result else None
        items.append(dead_letter_view(dl, replay))
    next_cursor = encode_cursor(rows[limit - 1][9], rows[limit - 1][0]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


# --- the outbox ------------------------------------------------------------------------------------------

_OUTBOX_COUNTS = {
    scoped: Statement("SELECT status, topic, count(*) FROM outbox"
                      + (" WHERE tenant_id = %(tenant)s" if scoped else "") + " GROUP BY status, topic")
    for scoped in (False, True)}
_OUTBOX_PENDING = {
    scoped: Statement("SELECT min(created_at) AS oldest, count(*) FILTER (WHERE next_attempt_at <= now()) AS due, "
                      "now() AS now FROM outbox WHERE status = 'pending'"
                      + (" AND tenant_id = %(tenant)s" if scoped else ""))
    for scoped in (False, True)}


def outbox_status(tenant_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Counts by status and topic, how many pending rows are due, and the age of the oldest pending row."""
    scoped = tenant_id is not None
    with direct.relaxed() as conn:
        counts = _OUTBOX_COUNTS[scoped].rows(conn, tenant=tenant_id)
        pending = _OUTBOX_PENDING[scoped].one(conn, tenant=tenant_id)
    assert pending is not None  # an aggregate always has its row
    by_status: dict[str, int] = {"pending": 0, "delivered": 0, "dead": 0}
    by_topic: dict[str, dict[str, int]] = {}
    for status, topic, n in counts:
        by_status[status] = by_status.get(status, 0) + n
        by_topic.setdefault(topic, {})[status] = n
    oldest = pending["oldest"]
    return {**by_status, "due": pending["due"] or 0, "by_topic": by_topic,
            "oldest_pending_age_s": round((pending["now"] - oldest).total_seconds(), 3) if oldest else None}


# --- leases ----------------------------------------------------------------------------------------------

_LOCKS = Statement("SELECT name, holder, fencing_token, acquired_at, expires_at, expires_at > now() AS held, "
                   "now() AS db_now FROM distributed_locks ORDER BY name")


def locks() -> list[dict[str, Any]]:
    """Every lease, with whether it is held right now (by the database clock)."""
    with direct.relaxed() as conn:
        rows = _LOCKS.rows(conn)
    return [{"name": name, "holder": holder, "fencing_token": int(token), "acquired_at": acquired.isoformat(),
             "expires_at": expires.isoformat(), "held": bool(held),
             "expires_in_s": round((expires - now).total_seconds(), 1) if held else 0.0}
            for name, holder, token, acquired, expires, held, now in rows]


# --- schedules -------------------------------------------------------------------------------------------


def schedule_view(sc: Any, workflow_name: str | None = None) -> dict[str, Any]:
    """A schedule as the API, the console and the CLI show it."""
    return {"id": str(sc.id), "workflow_id": str(sc.workflow_id), "workflow": workflow_name, "cron": sc.cron,
            "timezone": sc.timezone, "inputs": sc.inputs, "enabled": sc.enabled,
            "next_fire_at": _iso(sc.next_fire_at), "last_fired_at": _iso(sc.last_fired_at),
            "last_run_id": str(sc.last_run_id) if sc.last_run_id else None, "last_error": sc.last_error,
            "created_at": _iso(sc.created_at)}


_SCHEDULES = Statement(
    "SELECT sc.id, sc.workflow_id, sc.cron, sc.timezone, sc.inputs, sc.enabled, sc.next_fire_at, sc.last_fired_at, "
    "sc.last_run_id, sc.last_error, sc.created_at, w.name AS workflow "
    "FROM schedules sc LEFT JOIN workflows w ON w.id = sc.workflow_id "
    "WHERE sc.tenant_id = %(tenant)s ORDER BY sc.next_fire_at, sc.id")


def schedules(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's schedules, soonest first."""
    with direct.relaxed() as conn:
        rows = _SCHEDULES.dicts(conn, tenant=tenant_id)
    return [schedule_view(SimpleNamespace(**row), row["workflow"]) for row in rows]
