"""postgres.query: a parameterised, read-only query on a named connection.

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

from aos.skills.base import CostModel, RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult

if TYPE_CHECKING:
    import psycopg


def _psycopg() -> ModuleType:
    """psycopg, imported on first use: listing skills (`aos skills list`) must not pay for it, and a worker
    loads it before it forks (``warm_up``)."""
    importlib.import_module("psycopg.errors")  # a submodule: the failure mapping reads psycopg.errors.*
    return importlib.import_module("psycopg")

CONNECT_TIMEOUT_S = 10


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


def _libpq_url(url: str) -> str:
    # settings hold SQLAlchemy-style URLs too; libpq knows only postgresql:// and postgres://
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


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
                   "With `params`, a literal % is written %%. Give the connection a read-only role as well.")
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
            conn = psycopg.connect(_libpq_url(url), connect_timeout=connect_timeout,
                                   application_name="aos postgres.query")
        except psycopg.Error as exc:
            raise _connect_failure(name, exc) from None
        try:
            conn.read_only = True  # every transaction opens with BEGIN READ ONLY
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
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
        allowed = ctx.capabilities.get("db_connections") if ctx.capabilities else None
        known = sorted(ctx.settings.pg_connections)
        if allowed is not None:
            if name not in allowed:
                raise SkillError("CAPABILITY_DENIED", f"this agent may not use database connection {name!r}",
                                 details={"connection": name, "allowed": sorted(allowed)})
            known = [k for k in known if k in allowed]
        url = ctx.settings.pg_connections.get(name)
        if not isinstance(url, str) or not url:
            raise SkillError("PG_CONNECTION_UNKNOWN", f"no database connection named {name!r} "
                             f"(known: {', '.join(known) or 'none'})",
                             details={"connection": name, "known": known})
        return url

    @staticmethod
    def _query_failure(name: str, url: str, exc: psycopg.Error, timeout_ms: int) -> SkillError:
        psycopg = _psycopg()
        state = exc.sqlstate
        dropped = state is None and isinstance(exc, psycopg.OperationalError)
        if dropped or (state or "").startswith(("08", "57P0")):
            return _connect_failure(name, exc)  # the connection was lost: psycopg's text names the server
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        text = _Scrubber(_libpq_url(url))(exc.diag.message_primary or first_line)
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
