"""Daily quotas of provider calls per tenant: embeddings and LLM suggestions.

A call is counted before it is made, by one conditional upsert on ``recovery_usage`` (tenant, UTC day,
kind): ``calls + 1`` only while ``calls < limit``. A refused call is counted as refused; recovery then
falls back to the cheaper layers and the catalog's text, and the suggestion's metadata says
``QUOTA_EXCEEDED``. The limit is the tenant's own (``recovery_settings``) or AOS_RECOVERY_*_QUOTA.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from aos.config import Settings

KINDS = ("embedding", "llm")


def today() -> date:
    return datetime.now(UTC).date()


def tenant_settings(s: Session, tenant_id: uuid.UUID) -> dict[str, Any]:
    row = s.execute(text("SELECT auto_apply, embedding_quota, llm_quota FROM recovery_settings WHERE tenant_id = :t"),
                    {"t": tenant_id}).first()
    if row is None:
        return {"auto_apply": False, "embedding_quota": None, "llm_quota": None}
    return dict(row._mapping)


def limit_of(s: Session, settings: Settings, tenant_id: uuid.UUID, kind: str) -> int:
    own = tenant_settings(s, tenant_id)[f"{kind}_quota"]
    if own is not None:
        return int(own)
    return settings.recovery_embedding_quota if kind == "embedding" else settings.recovery_llm_quota


def take(s: Session, settings: Settings, tenant_id: uuid.UUID, kind: str) -> bool:
    """Count one call of ``kind`` against today's quota; False (and counted as refused) when it is spent."""
    limit = limit_of(s, settings, tenant_id, kind)
    day = today()
    took = s.execute(text(
        "INSERT INTO recovery_usage AS u (tenant_id, day, kind, calls) SELECT :t, :d, :k, 1 WHERE :lim > 0 "
        "ON CONFLICT (tenant_id, day, kind) DO UPDATE SET calls = u.calls + 1 WHERE u.calls < :lim RETURNING calls"),
        {"t": tenant_id, "d": day, "k": kind, "lim": limit}).first()
    if took is not None:
        return True
    s.execute(text("INSERT INTO recovery_usage AS u (tenant_id, day, kind, refused) VALUES (:t, :d, :k, 1) "
                   "ON CONFLICT (tenant_id, day, kind) DO UPDATE SET refused = u.refused + 1"),
              {"t": tenant_id, "d": day, "k": kind})
    return False


def spend(s: Session, tenant_id: uuid.UUID, kind: str, *, tokens: int, cost_usd: float) -> None:
    if tokens or cost_usd:
        s.execute(text("UPDATE recovery_usage SET tokens = tokens + :n, cost_usd = cost_usd + :c "
                       "WHERE tenant_id = :t AND day = :d AND kind = :k"),
                  {"t": tenant_id, "d": today(), "k": kind, "n": tokens, "c": Decimal(str(cost_usd))})


def status(s: Session, settings: Settings, tenant_id: uuid.UUID) -> dict[str, Any]:
    """Today's use of each quota: limit, calls, refused, remaining, tokens, cost, and QUOTA_EXCEEDED when spent."""
    day = today()
    rows = {r.kind: r for r in s.execute(text(
        "SELECT kind, calls, refused, tokens, cost_usd FROM recovery_usage WHERE tenant_id = :t AND day = :d"),
        {"t": tenant_id, "d": day}).all()}
    out: dict[str, Any] = {"day": day.isoformat(), "quotas": {}}
    for kind in KINDS:
        limit = limit_of(s, settings, tenant_id, kind)
        r = rows.get(kind)
        calls = r.calls if r else 0
        out["quotas"][kind] = {
            "limit": limit, "calls": calls, "refused": r.refused if r else 0, "remaining": max(limit - calls, 0),
            "tokens": r.tokens if r else 0, "cost_usd": float(r.cost_usd) if r else 0.0,
            "code": "QUOTA_EXCEEDED" if calls >= limit else None}
    return out
