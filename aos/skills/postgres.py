"""postgres.query: a parameterised, read-only query on a named connection.

A READ ONLY transaction stops writes, not a powerful role: a superuser (or a member of
pg_read_server_files, pg_write_server_files or pg_execute_server_program) still reads
server files (``pg_read_file``) and runs programs (``COPY … TO PROGRAM``) from a read-only
transaction. So before any plan SQL the connection's login role is checked, and a role
that is, or may become (``SET ROLE``), one of those is refused (PG_ROLE_TOO_POWERFUL).
The statement, lock and idle-in-transaction timeouts are set when the connection opens.

Connections are scoped: each names the tenants whose plans may use it, and an agent's
``db_connections`` capability narrows that further. A name the caller may not use is
unknown to it, and PG_CONNECTION_UNKNOWN lists only the names it may use.

The connection's URL is a secret: it never appears in an output, an error
message, details or a log line. psycopg's connection errors name the host, port
and user, so they are replaced by a message naming only the connection.
"""

from __future__ import annotations

import base64
import importlib
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aos.config import libpq_url
from aos.skills.base import CostModel, RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult

if TYPE_CHECKING:
    import psycopg


def _psycopg() -> ModuleType:
    """psycopg, imported on first use: listing skills (`aos skills list`) must not pay for it, and a worker
    loads it before it forks (``warm_up``)."""
    importlib.import_module("psycopg.errors")  # a submodule: the failure mapping reads psycopg.errors.*
    return importlib.import_module("psycopg")


CONNECT_TIMEOUT_S = 10
# Built-in roles whose members reach outside the database: the server's files and programs.
POWERFUL_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
# The roles the login role is, or may become (membership: inherited or by SET ROLE), that make it powerful.
_POWER_QUERY = """
    SELECT r.rolname, r.rolsuper FROM pg_roles r
    WHERE (r.rolsuper OR r.rolname = ANY(%s)) AND pg_has_role(session_user, r.oid, 'MEMBER')
    ORDER BY r.rolsuper DESC, r.rolname"""


def role_power(conn: psycopg.Connection) -> str | None:
    """Why plan SQL must not run as this connection's login role (e.g. "is a superuser"), or None."""
    with conn.cursor() as cur:
        cur.execute(_POWER_QUERY, [list(POWERFUL_ROLES)])
        rows = cur.fetchall()
        cur.execute("SELECT session_user")
        (me,) = cur.fetchone() or ("?",)
    conn.rollback()
    if not rows:
        return None
    name, superuser = rows[0]
    if name == me:
        return f"role {me!r} is a superuser" if superuser else f"role {me!r} is {name}"
    kind = "the superuser role" if superuser else "the role"
    return f"role {me!r} is a member of {kind} {name!r}"


def connect_options(url: str, timeout_ms: int) -> str:
    """libpq ``options`` for plan SQL: read-only by default, every wait bounded from the first statement on
    (after any options the connection's URL carries, so ours win)."""
    ms = max(1, int(timeout_ms))
    ours = (f"-c default_transaction_read_only=on -c statement_timeout={ms} -c lock_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={max(ms, 1000)}")
    psycopg = _psycopg()
    try:
        given = str(importlib.import_module("psycopg.conninfo").conninfo_to_dict(url).get("options") or "")
    except psycopg.ProgrammingError:
        given = ""
    return f"{given} {ours}".strip()


def open_connection(url: str, *, timeout_ms: int, connect_timeout: int) -> psycopg.Connection:
    """A connection for plan SQL (or for `aos doctor` to judge one): read-only, with its timeouts."""
    libpq = libpq_url(url)
    return _psycopg().connect(libpq, connect_timeout=connect_timeout, application_name="aos postgres.query",
                           options=connect_options(libpq, timeout_ms))


def usable_connections(settings: Any, tenant_id: str, capabilities: Mapping[str, Any] | None) -> dict[str, str]:
    """The connections (name → URL) a step of this tenant (and agent, when it has the capability) may use."""
    allowed = (capabilities or {}).get("db_connections")
    out = {}
    for name, conn in settings.pg_connections.items():
        tenants = conn.get("tenants")
        if tenants != "*" and str(tenant_id) not in tenants:
            continue
        if allowed is not None and name not in allowed:
            continue
        out[name] = conn["url"]
    return out


def json_safe(value: Any) -> Any:
    """A database value as JSON: exact numbers as text, times as ISO 8601, bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN/Infinity are not JSON
    if isinstance(value, Decimal):
        return str(value)  # a float would lose digits of a numeric
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)  # UUID, inet, ranges, enums: their text form is what Postgres prints


def _iso_duration(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else ""
    delta = abs(delta)
    seconds = delta.seconds + delta.microseconds / 1_000_000
    text = f"{seconds:f}".rstrip("0").rstrip(".")
    return f"{sign}P{delta.days}DT{text}S"


def _connect_failure(name: str, exc: psycopg.Error) -> SkillError:
    """A connection error with psycopg's text (host, port, user) left out."""
    psycopg = _psycopg()
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith("28"):
        reason = "authentication failed"
    elif state == "3D000":
        reason = "the database does not exist"
    elif isinstance(exc, psycopg.ProgrammingError):
        reason = "its URL is malformed"
    else:
        reason = "the server is unreachable or refused the connection"
    details = {"connection": name, "reason": reason}
    if state:
        details["sqlstate"] = state
    return SkillError("PG_CONNECTION_FAILED", f"could not connect to database connection {name!r}: {reason}",
                      details=details)


class _Scrubber:
    """Removes the URL's secrets from server messages that might echo them."""

    def __init__(self, url: str) -> None:
        info = importlib.import_module("psycopg.conninfo").conninfo_to_dict(url) if url else {}
        secrets = [url, str(info.get("password") or "")]
        if info.get("user") and info.get("host"):
            secrets.append(f"{info['user']}@{info['host']}")
        self._secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class PostgresQuery(Skill):
    name = "postgres.query"
    version = 1
    summary_text = "Read-only SQL query"
    description = ("Run one parameterised SQL statement on a named, configured connection (AOS_PG_CONNECTIONS), "
                   "inside a READ ONLY transaction with a statement timeout, returning at most `max_rows` rows. "
                   "Placeholders: %s with a `params` array, %(name)s with a `params` object. Values come back "
                   "JSON-safe: numeric as text, dates and times as ISO 8601, bytea as base64, uuid as text. "
                   "With `params`, a literal % is written %%. The connection's role must not be a superuser nor "
                   "able to read or write server files or run programs.")
    input_schema = {
        "type": "object",
        "required": ["connection", "sql"],
        "additionalProperties": False,
        "properties": {
            "connection": {"type": "string", "minLength": 1, "description": "a name from AOS_PG_CONNECTIONS"},
            "sql": {"type": "string", "minLength": 1, "description": "one SQL statement"},
            "params": {"type": ["array", "object"], "description": "values for the placeholders"},
            "max_rows": {"type": "integer", "minimum": 1,
                         "description": "row cap; AOS_PG_QUERY_MAX_ROWS when larger or absent"},
        },
    }
    output_schema = {
        "type": "object",
        "required": ["columns", "rows", "row_count", "truncated"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array"}},
            "row_count": {"type": "integer"},
            "truncated": {"type": "boolean"},
        },
    }
    side_effect = SideEffect.IDEMPOTENT
    deterministic = False  # the data can change between calls
    cost_model = CostModel(fixed_usd=0.0, latency_ms=50.0)
    default_timeout_s = 30.0
    default_retry = RetryPolicy(max_attempts=3, backoff_s=1, backoff_max_s=20)
    recommended = None

    def warm_up(self) -> None:
        _psycopg()

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        psycopg = _psycopg()
        name = args["connection"]
        url = self._url(name, ctx)
        cap = min(args.get("max_rows") or ctx.settings.pg_query_max_rows, ctx.settings.pg_query_max_rows)
        timeout_ms = int(ctx.settings.pg_query_timeout_ms)
        connect_timeout = max(2, min(CONNECT_TIMEOUT_S, int(ctx.timeout_s or CONNECT_TIMEOUT_S)))
        try:
            conn = open_connection(url, timeout_ms=timeout_ms, connect_timeout=connect_timeout)
        except psycopg.Error as exc:
            raise _connect_failure(name, exc) from None
        try:
            conn.read_only = True  # every transaction opens with BEGIN READ ONLY
            power = role_power(conn)
            if power is not None:
                raise SkillError("PG_ROLE_TOO_POWERFUL", f"database connection {name!r}: {power}; AOS runs plan "
                                 "SQL only on a least-privilege role (docs/security.md)",
                                 details={"connection": name, "reason": power})
            with conn.cursor() as cur:
                # prepare=True sends the statement with the extended protocol even without params, so
                # "COMMIT; INSERT …" cannot end the read-only transaction and run a second statement
                cur.execute(args["sql"], args.get("params"), prepare=True)
                if cur.description is None:
                    columns, rows = [], []
                else:
                    columns = [col.name for col in cur.description]
                    rows = cur.fetchmany(cap + 1)
            conn.rollback()
        except psycopg.Error as exc:
            raise self._query_failure(name, url, exc, timeout_ms) from None
        finally:
            conn.close()
        truncated = len(rows) > cap
        rows = [[json_safe(v) for v in row] for row in rows[:cap]]
        return SkillResult(output={"columns": columns, "rows": rows, "row_count": len(rows),
                                   "truncated": truncated})

    @staticmethod
    def _url(name: str, ctx: SkillContext) -> str:
        usable = usable_connections(ctx.settings, ctx.tenant_id, ctx.capabilities)
        if name in usable:
            return usable[name]
        tenant_has = usable_connections(ctx.settings, ctx.tenant_id, None)
        allowed = ctx.capabilities.get("db_connections") if ctx.capabilities else None
        if name in tenant_has and allowed is not None:  # the tenant's own connection, outside the agent's policy
            raise SkillError("CAPABILITY_DENIED", f"this agent may not use database connection {name!r}",
                             details={"connection": name, "allowed": sorted(usable)})
        # another tenant's connection is as unknown as one that does not exist: no name is confirmed
        known = sorted(usable)
        raise SkillError("PG_CONNECTION_UNKNOWN", f"no database connection named {name!r} "
                         f"(known: {', '.join(known) or 'none'})", details={"connection": name, "known": known})

    @staticmethod
    def _query_failure(name: str, url: str, exc: psycopg.Error, timeout_ms: int) -> SkillError:
        psycopg = _psycopg()
        state = exc.sqlstate
        dropped = state is None and isinstance(exc, psycopg.OperationalError)
        if dropped or (state or "").startswith(("08", "57P0")):
            return _connect_failure(name, exc)  # the connection was lost: psycopg's text names the server
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        text = _Scrubber(libpq_url(url))(exc.diag.message_primary or first_line)
        details: dict[str, Any] = {"connection": name}
        if state:
            details["sqlstate"] = state
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return SkillError("PG_QUERY_TIMEOUT", f"the query ran longer than {timeout_ms} ms and was cancelled",
                              details={**details, "timeout_ms": timeout_ms})
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return SkillError("PG_READ_ONLY_VIOLATION", f"postgres.query is read-only: {text}", details=details)
        if isinstance(exc, psycopg.errors.SyntaxError):
            if exc.diag.statement_position:
                details["position"] = int(exc.diag.statement_position)
            return SkillError("PG_SYNTAX_ERROR", f"SQL syntax error: {text}", details=details)
        return SkillError("PG_QUERY_ERROR", f"the query failed: {text}", details=details)


SKILLS: list[Skill] = [PostgresQuery()]
