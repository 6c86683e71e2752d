"""A tenant's limits and what it used of them today: the quotas API, `aos tenants limits`, and the checks
that raise QUOTA_EXCEEDED where a daily quota applies.

Limits live in ``tenant_quotas`` (request rates and daily quotas) and ``tenants.daily_budget_usd`` (the
daily cost budget the step claim reserves against). Days are UTC days, like ``tenant_daily_spend``. Request
counts live with the rate limiter (in Redis); the web layer passes them in.

Where each quota applies:
- ``daily_budget_usd``: every step reserves its estimate against it (``BUDGET_EXCEEDED`` when it does not
  fit); a ``budget.warning`` (scope ``tenant_daily``) is recorded once a day when spend reaches 80 %;
- ``daily_runs``: a submission through the API (a plan or a workflow) past it is refused (schedules fire
  on their own: their runs count, they are not refused);
- ``daily_tokens``: a submission is refused once the day's spent tokens reached it (running runs finish);
- ``daily_requests``, ``*_requests_per_minute``: the API's rate limiter (aos/web/ratelimit.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from aos.config import Settings, get_settings, redis_py_url
from aos.db import direct
from aos.db.models import Run, Tenant, TenantDailySpend, TenantQuota
from aos.db.session import session_scope
from aos.db.statements import Statement
from aos.errors import AosError
from aos.runtime import budget
from aos.services.tenancy import Quotas, TenantContext

RATE_FIELDS = ("key_requests_per_minute", "tenant_requests_per_minute")
DAILY_FIELDS = ("daily_requests", "daily_runs", "daily_tokens")
LIMIT_FIELDS = (*RATE_FIELDS, *DAILY_FIELDS, "daily_budget_usd")


def rate_limit_storage(settings: Settings) -> str:
    """Where the API's rate-limit buckets and request counts live: AOS_RATE_LIMIT_STORAGE_URL, else the broker's
    Redis (same server, own keys), else ``memory://`` (per API process)."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    return redis_py_url(settings.broker_url) or "memory://"


def day_key(tenant_id: Any, now: datetime | None = None) -> str:
    """The Redis key of a tenant's API requests on a UTC day (the date in the key: it starts again at midnight)."""
    return f"aos:rl:day:{tenant_id}:{(now or datetime.now(UTC)).date().isoformat()}"


def requests_today(tenant_id: Any) -> int | None:
    """The tenant's API requests today as the rate limiter counted them (None: counted in an API process's
    memory, or Redis unreachable). For the CLI; the API reads its own store."""
    url = rate_limit_storage(get_settings())
    if url == "memory://":
        return None
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return int(client.get(day_key(tenant_id)) or 0)  # type: ignore[arg-type]
        finally:
            client.close()
    except redis.RedisError:
        return None


def next_reset(now: datetime | None = None) -> datetime:
    """The next UTC midnight: when every daily quota starts again."""
    now = now or datetime.now(UTC)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def quotas_view(tenant_id: uuid.UUID, *, requests_today: int | None, defaults: dict[str, int]) -> dict[str, Any]:
    """The tenant's limits (its own, or the deployment's ``defaults`` for rates) and today's usage."""
    now = datetime.now(UTC)
    with session_scope() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise AosError("TENANT_NOT_FOUND", f"no tenant {tenant_id}")
        own = s.get(TenantQuota, tenant_id)
        day = s.get(TenantDailySpend, (tenant_id, now.date()))
        runs_today = s.scalar(select(func.count()).select_from(Run)
                              .where(Run.tenant_id == tenant_id, Run.created_at >= _day_start(now)))
    limits: dict[str, Any] = {f: getattr(own, f, None) for f in (*RATE_FIELDS, *DAILY_FIELDS)}
    for f in RATE_FIELDS:
        limits[f] = limits[f] or defaults[f]
    limits["daily_budget_usd"] = float(tenant.daily_budget_usd) if tenant.daily_budget_usd is not None else None
    spent = float(day.spent_cost_usd) if day else 0.0
    return {
        "tenant": {"id": str(tenant.id), "name": tenant.name},
        "limits": limits,
        "own": {f: getattr(own, f, None) for f in RATE_FIELDS},  # None: the deployment default applies
        "usage": {"day": now.date().isoformat(), "cost_usd": spent,
                  "reserved_cost_usd": float(day.reserved_cost_usd) if day else 0.0,
                  "tokens": int(day.spent_tokens) if day else 0, "runs": int(runs_today or 0),
                  "requests": requests_today},
        "resets_at": next_reset(now).isoformat(),
        "budget_warned_at": day.warned_at.isoformat() if day and day.warned_at else None,
    }


def set_quotas(session: Session, tenant_id: uuid.UUID, changes: dict[str, Any]) -> None:
    """Apply ``changes`` (a subset of LIMIT_FIELDS; None removes a limit, back to the default or to none)."""
    unknown = sorted(set(changes) - set(LIMIT_FIELDS))
    if unknown:
        raise AosError("VALIDATION_ERROR", f"unknown limit(s) {unknown}; known: {', '.join(LIMIT_FIELDS)}")
    for name, value in changes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | Decimal)
                                  or value < 0 or (name != "daily_budget_usd" and int(value) != value)):
            raise AosError("VALIDATION_ERROR", f"{name} must be a non-negative {'number' if name == 'daily_budget_usd' else 'integer'} or null")
        if name in RATE_FIELDS and value is not None and value < 1:
            raise AosError("VALIDATION_ERROR", f"{name} must be at least 1 (null: the deployment default)")
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise AosError("TENANT_NOT_FOUND", f"no tenant {tenant_id}")
    if "daily_budget_usd" in changes:
        value = changes["daily_budget_usd"]
        tenant.daily_budget_usd = budget.money(value) if value is not None else None
    own = {k: (int(v) if v is not None else None) for k, v in changes.items() if k != "daily_budget_usd"}
    if own:
        stmt = insert(TenantQuota).values(tenant_id=tenant_id, **own)
        session.execute(stmt.on_conflict_do_update(index_elements=["tenant_id"],
                                                   set_={**own, "updated_at": func.now()}))
    session.flush()


_TODAY = Statement("""
SELECT (SELECT count(*) FROM runs WHERE tenant_id = %(tenant)s AND created_at >= %(since)s) AS runs,
       coalesce((SELECT spent_tokens FROM tenant_daily_spend WHERE tenant_id = %(tenant)s AND day = %(day)s), 0)
           AS tokens
""")


def check_submission(ctx: TenantContext) -> None:
    """QUOTA_EXCEEDED when the tenant's daily runs or tokens are used up (only for tenants with such quotas:
    the common submission pays nothing). Concurrent submissions may pass the runs quota by their number."""
    q: Quotas = ctx.quotas
    if q.daily_runs is None and q.daily_tokens is None:
        return
    now = datetime.now(UTC)
    with direct.relaxed() as conn:
        row = _TODAY.one(conn, tenant=ctx.tenant_id, since=_day_start(now), day=now.date())
    assert row is not None
    if q.daily_runs is not None and row["runs"] >= q.daily_runs:
        raise quota_exceeded("daily_runs", q.daily_runs, f"{q.daily_runs} runs a day", now)
    if q.daily_tokens is not None and row["tokens"] >= q.daily_tokens:
        raise quota_exceeded("daily_tokens", q.daily_tokens, f"{q.daily_tokens} tokens a day", now)


def quota_exceeded(name: str, limit: int, what: str, now: datetime | None = None) -> AosError:
    reset = next_reset(now)
    wait = max(1, int((reset - (now or datetime.now(UTC))).total_seconds() + 0.999))
    return AosError("QUOTA_EXCEEDED", f"the tenant's quota of {what} is used up; it resets at {reset.isoformat()}",
                    details={"quota": name, "limit": limit, "resets_at": reset.isoformat(), "retry_after_s": wait})


_DAY_WARN = Statement("""
WITH w AS (
    UPDATE tenant_daily_spend d SET warned_at = now()
    FROM tenants t
    WHERE d.tenant_id = %(tenant)s AND d.day = %(day)s AND d.warned_at IS NULL AND t.id = d.tenant_id
      AND t.daily_budget_usd > 0 AND d.spent_cost_usd >= %(ratio)s * t.daily_budget_usd
    RETURNING d.spent_cost_usd::float8 AS spent, t.daily_budget_usd::float8 AS budget, d.spent_tokens AS tokens
), ev AS (
    INSERT INTO run_events (tenant_id, run_id, type, data)
    SELECT %(tenant)s, %(run)s, 'budget.warning', jsonb_build_object(
        'scope', 'tenant_daily', 'ratios', jsonb_build_object('cost', round((w.spent / w.budget)::numeric, 3)),
        'spent_cost_usd', w.spent, 'daily_budget_usd', w.budget, 'day', %(day)s::text)
    FROM w RETURNING data
), ob AS (
    INSERT INTO outbox (tenant_id, topic, payload)
    SELECT %(tenant)s, 'budget.warning', jsonb_build_object('run_id', %(run)s::text, 'event', 'budget.warning',
                                                             'data', ev.data)
    FROM ev
)
SELECT count(*) AS warned FROM w
""")


def warn_daily_budget(tenant_id: uuid.UUID, run_id: uuid.UUID, day: Any) -> bool:
    """Record the tenant's ``budget.warning`` (on the run whose step crossed 80 % of the day's budget, and as
    a webhook) the first time today's spend reaches it; True when this call recorded it. Called after a step
    that cost something settled."""
    with direct.durable() as conn:
        row = _DAY_WARN.one(conn, tenant=tenant_id, run=run_id, day=day, ratio=budget.WARN_RATIO)
    return bool(row and row["warned"])
