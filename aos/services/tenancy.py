"""Tenants and API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aos.db import direct, step_store
from aos.db.models import ApiKey, Tenant
from aos.db.scope import OPERATOR
from aos.db.statements import Statement
from aos.errors import AosError
from aos.services.listings import no_such_tenant

KEY_PREFIX = "aos_"
PREFIX_SHAPE = re.compile(r"[0-9a-f]{12}")
ALL_SCOPES = ("runs:read", "runs:write", "admin", "operator")
DEFAULT_SCOPES = ("runs:read", "runs:write")
# `admin` is every scope of its own tenant; `operator` (the deployment: queues, workers, other tenants'
# quotas) is given only by name, never implied (docs/security.md)
TENANT_SCOPES = frozenset({"runs:read", "runs:write", "admin"})


@dataclass(frozen=True)
class Quotas:
    """A tenant's own limits (``tenant_quotas``): None is the deployment's default rate, or no daily quota."""

    key_requests_per_minute: int | None = None
    tenant_requests_per_minute: int | None = None
    daily_requests: int | None = None
    daily_runs: int | None = None
    daily_tokens: int | None = None


NO_QUOTAS = Quotas()


@dataclass(frozen=True)
class TenantContext:
    """Who is calling: carried from the API key into every service call and Celery task."""

    tenant_id: uuid.UUID
    tenant_name: str
    key_id: uuid.UUID | None
    scopes: frozenset[str]
    # who, for per-caller rate limits: ``key:<key id>`` or ``jwt:<sub>`` (None: an internal caller)
    caller: str | None = None
    quotas: Quotas = NO_QUOTAS
    # the tenant's own cap on runs holding a slot (None: the deployment's default; aos.services.concurrency)
    max_running_runs: int | None = None

    def has(self, scope: str) -> bool:
        return scope in self.scopes or (scope in TENANT_SCOPES and "admin" in self.scopes)

    def require(self, scope: str) -> None:
        if not self.has(scope):
            raise AosError("FORBIDDEN_SCOPE", f"this caller lacks the {scope!r} scope; use an API key "
                           f"(`aos keys create --scope {scope}`) or a token that has it")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(session: Session, name: str) -> Tenant:
    name = name.strip()
    if not name or len(name) > 100:
        raise AosError("VALIDATION_ERROR", "a tenant name has 1 to 100 characters")
    tenant = Tenant(name=name)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:
        raise AosError("CONFLICT", f"a tenant named {name!r} already exists") from None
    return tenant


def get_tenant_by_name(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise no_such_tenant(name)
    return tenant


def create_api_key(session: Session, tenant: Tenant, name: str = "default",
                   scopes: tuple[str, ...] = DEFAULT_SCOPES) -> tuple[str, ApiKey]:
    """Make a key; return (the key in clear — shown once, never stored —, its row)."""
    bad = [s for s in scopes if s not in ALL_SCOPES]
    if bad:
        raise AosError("VALIDATION_ERROR", f"unknown scope(s) {bad}; known: {', '.join(ALL_SCOPES)}")
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(tenant_id=tenant.id, name=name, prefix=prefix, key_hash=_hash(key), scopes=list(scopes))
    session.add(row)
    session.flush()
    return key, row


def _key_prefix(key: str) -> str:
    """The key's lookup prefix; AUTH_INVALID for anything not shaped like a key (checked before any query:
    a NUL byte or a huge string never reaches Postgres)."""
    parts = key.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX or not PREFIX_SHAPE.fullmatch(parts[1]) \
            or not 0 < len(parts[2]) <= 100:
        raise AosError("AUTH_INVALID", "malformed API key; keys look like aos_<prefix>_<secret>")
    return parts[1]


_QUOTA_COLUMNS = """q.key_requests_per_minute, q.tenant_requests_per_minute, q.daily_requests, q.daily_runs,
       q.daily_tokens"""
_KEY = Statement(f"""
SELECT k.id, k.tenant_id, k.key_hash, k.scopes, k.revoked_at, t.name, t.max_running_runs, {_QUOTA_COLUMNS}
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id LEFT JOIN tenant_quotas q ON q.tenant_id = t.id
WHERE k.prefix = %(prefix)s
""")
_TENANT = Statement(f"""
SELECT t.id, t.name, t.max_running_runs, {_QUOTA_COLUMNS}
FROM tenants t LEFT JOIN tenant_quotas q ON q.tenant_id = t.id WHERE t.name = %(name)s
""")


def authenticate(session: Session, key: str) -> TenantContext:
    """Resolve a bearer key to its tenant; AUTH_INVALID for anything but a live key."""
    return _context(key, _KEY.one(step_store.session_connection(session), prefix=_key_prefix(key)))


def authenticate_key(key: str) -> TenantContext:
    """``authenticate`` in one prepared read on this thread's engine connection (every API request)."""
    prefix = _key_prefix(key)
    # which tenant a key belongs to is not known before this read: it looks across tenants (operator)
    with direct.relaxed(OPERATOR) as conn:
        row = _KEY.one(conn, prefix=prefix)
    return _context(key, row)


def _context(key: str, row: dict | None) -> TenantContext:
    if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["key_hash"], _hash(key)):
        raise AosError("AUTH_INVALID", "unknown or revoked API key")
    return TenantContext(tenant_id=row["tenant_id"], tenant_name=row["name"], key_id=row["id"],
                         scopes=frozenset(row["scopes"]), caller=f"key:{row['id']}", quotas=_quotas(row),
                         max_running_runs=row["max_running_runs"])


def _quotas(row: dict) -> Quotas:
    values = {f: row[f] for f in Quotas.__dataclass_fields__}
    return NO_QUOTAS if not any(v is not None for v in values.values()) else Quotas(**values)


def tenant_context(tenant_name: object, *, scopes: frozenset[str], caller: str) -> TenantContext:
    """The context of a caller whose tenant was vouched for by name (a verified bearer token);
    AUTH_INVALID when no tenant has that name (no hint whether the token or the tenant was wrong)."""
    if not isinstance(tenant_name, str) or not 0 < len(tenant_name) <= 100 or "\x00" in tenant_name:
        raise AosError("AUTH_INVALID", "the bearer token is not valid")
    # which tenant a token names is not known before this read: it looks across tenants (operator)
    with direct.relaxed(OPERATOR) as conn:
        row = _TENANT.one(conn, name=tenant_name)
    if row is None:
        raise AosError("AUTH_INVALID", "the bearer token is not valid")
    return TenantContext(tenant_id=row["id"], tenant_name=row["name"], key_id=None,
                         scopes=frozenset(s for s in scopes if s in ALL_SCOPES), caller=caller, quotas=_quotas(row),
                         max_running_runs=row["max_running_runs"])


_KEY_BY_ID = Statement("""
SELECT k.id, k.tenant_id, k.scopes, k.revoked_at, t.name, t.max_running_runs
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = %(key_id)s
""")


def key_context(key_id: uuid.UUID | str) -> TenantContext:
    """The tenant context of a key already proven (a console session holds its id, never the key itself);
    AUTH_INVALID once the key is revoked or gone, so revoking a key ends its sessions too."""
    try:
        kid = uuid.UUID(str(key_id))
    except ValueError:
        raise AosError("AUTH_INVALID", "the session names no API key; sign in again") from None
    with direct.relaxed(OPERATOR) as conn:  # the key's tenant is what this read finds out
        row = _KEY_BY_ID.one(conn, key_id=kid)
    if row is None or row["revoked_at"] is not None:
        raise AosError("AUTH_INVALID", "the API key of this session was revoked; sign in with a live key")
    return TenantContext(tenant_id=row["tenant_id"], tenant_name=row["name"], key_id=row["id"],
                         scopes=frozenset(row["scopes"]), caller=f"key:{row['id']}",
                         max_running_runs=row["max_running_runs"])


def revoke_api_key(session: Session, tenant_id: uuid.UUID, prefix: str) -> None:
    res = session.execute(update(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.prefix == prefix,
                                               ApiKey.revoked_at.is_(None))
                          .values(revoked_at=datetime.now(UTC)))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise AosError("NOT_FOUND", f"no live key with prefix {prefix!r} for this tenant")


def set_max_running_runs(session: Session, tenant: Tenant, cap: int | None) -> None:
    """Set the tenant's cap on runs holding a slot (None: the deployment's default). Waiting runs that a
    raised cap lets start are admitted by the caller (``aos.services.concurrency.admit``)."""
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise AosError("VALIDATION_ERROR", "max_running_runs must be an integer >= 1 (or unset)")
    tenant.max_running_runs = cap
    session.flush()
