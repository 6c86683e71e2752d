"""`aos doctor`: check that a deployment can keep its promises, and say how to fix what cannot.

Each check returns findings ``{check, ok, level, detail, fix}``. ``level`` is
``error`` for a problem (the command exits non-zero) and ``info`` for a fact an
operator should know that is not a failure (pgvector absent, no beat leader yet).

Why each check exists:
- migrations: a worker on a schema it does not expect fails in ways that look random;
- broker eviction policy: a Redis that may evict drops queued step messages silently
  (only ``noeviction`` refuses writes instead);
- broker persistence: a Redis restart without AOF/RDB loses every queued message;
  the outbox and the reaper recover runs, but only after their grace periods;
- visibility timeout: Redis redelivers an unacknowledged message after it, so a retry
  countdown (an ETA message waiting in the worker) or a step that runs longer is
  delivered twice (celery#5935); it must exceed both;
- postgres.query connections: a role that is a superuser, or may read/write the server's
  files or run its programs, is refused at every query; better to learn it here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg

from aos.config import ConfigError, Settings, libpq_url, load_settings, redis_py_url
from aos.db import revisions
from aos.db.rls import role_problems, tenant_tables, unguarded_tables
from aos.db.vocabulary import BEAT_LEASE
from aos.skills.postgres import open_connection, role_power

log = logging.getLogger(__name__)

TIMEOUT_S = 3


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str | None = None
    level: str = "error"  # error | info

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail, None, "info")


def _fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, False, detail, fix)


def _info(check: str, detail: str, fix: str | None = None) -> Finding:
    return Finding(check, True, detail, fix, "info")


# --- database ------------------------------------------------------------------------------------------


def _connect(url: str) -> psycopg.Connection[Any]:
    """A connection of doctor's own to the AOS database, as its login (as the migrations connect), in autocommit:
    plain psycopg, as the operator's listings read (aos.services.listings), for importing SQLAlchemy (and
    alembic) cost doctor more CPU than all its checks."""
    return psycopg.connect(libpq_url(url), connect_timeout=TIMEOUT_S, autocommit=True, application_name="aos doctor")


def _scalar(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def check_database(settings: Settings) -> list[Finding]:
    """Database reachable, migrations current, pgvector (info), the beat leader (info)."""
    if not settings.database_url:
        return [_fail("database", "AOS_DATABASE_URL is not set",
                      "set AOS_DATABASE_URL to a postgresql:// URL (or run inside `aos dev`)")]
    try:
        conn = _connect(settings.database_url)
    except Exception as exc:  # noqa: BLE001 — any failure to connect is the finding
        return [_fail("database", f"cannot connect: {type(exc).__name__}: {_first_line(exc)}",
                      "start Postgres or correct AOS_DATABASE_URL (host, port, credentials, database)")]
    with conn:
        # what SHOW server_version says, as the server reports it when the connection starts
        version = conn.info.parameter_status("server_version")
        return [_ok("database", f"reachable (PostgreSQL {version})"), _check_migrations(conn), _check_pgvector(conn),
                _check_row_security(conn, settings), _check_beat_leader(conn)]


def _check_migrations(conn: psycopg.Connection[Any]) -> Finding:
    """The revision only: comparing every model with the live schema (`aos db check`) reflects the whole
    database, which made `aos doctor` slow; a deployment at head has the schema its code expects."""
    try:
        current, head = revisions.current_revision(conn), revisions.head_revision()
    except Exception as exc:  # noqa: BLE001
        return _fail("migrations", f"cannot read the revision: {type(exc).__name__}: {_first_line(exc)}",
                     "run `aos db upgrade`, then `aos db check`")
    if current != head:
        return _fail("migrations", f"database is at revision {current or '(none)'}, this code expects {head}",
                     "run `aos db upgrade` (and deploy the matching code)")
    return _ok("migrations", f"database at head revision {head} (`aos db check` also compares models and schema)")


def _check_row_security(conn: psycopg.Connection[Any], settings: Settings) -> Finding:
    if not tenant_tables(conn):
        return _info("row security", "no tables yet (the migrations finding says why)")
    problems = [*role_problems(conn, settings.db_app_role)] if settings.db_app_role else []
    unguarded = unguarded_tables(conn)
    if unguarded:
        problems.append(f"tenant tables without a forced tenant_rows policy: {', '.join(unguarded)}")
    if problems:
        return _fail("row security", "; ".join(problems),
                     "run `aos db upgrade`; see docs/operations.md (Database roles) for what a DBA grants")
    return _ok("row security", f"every tenant table has forced row-level security; AOS acts as "
               f"{settings.db_app_role or 'its login'} (docs/security.md)")


def _check_pgvector(conn: psycopg.Connection[Any]) -> Finding:
    installed = _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if installed:
        return _info("pgvector", f"pgvector {installed} installed: failure_patterns.embedding is a vector column "
                     "with an HNSW index; recovery's similarity layer searches it in Postgres")
    available = _scalar(conn, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    if available:
        return _info("pgvector", "pgvector is available on the server but not installed: "
                     "failure_patterns.embedding is a float8[] column (the fallback: recovery's similarity layer "
                     "compares the tenant's latest patterns of a code in Python, AOS_RECOVERY_FALLBACK_SCAN of them)",
                     "the migrations use pgvector only if it is present when `aos db upgrade` creates the "
                     "schema; this database was created without it and keeps the fallback")
    return _info("pgvector", "pgvector is not present: failure_patterns.embedding is a float8[] column "
                 "(the fallback: recovery's similarity layer compares the tenant's latest patterns of a code in "
                 "Python, AOS_RECOVERY_FALLBACK_SCAN of them)",
                 "for HNSW search use a Postgres with pgvector (e.g. the pgvector/pgvector:pg16 image)")


def _check_beat_leader(conn: psycopg.Connection[Any]) -> Finding:
    try:
        row = conn.execute("SELECT holder, expires_at > now() FROM distributed_locks WHERE name = %(n)s",
                           {"n": BEAT_LEASE}).fetchone()
    except Exception:  # noqa: BLE001 — before migrations there is no table; the migrations finding says so
        return _info("beat", "cannot read distributed_locks")
    if row is None or not row[1]:
        return _info("beat", "no beat process holds the leadership lease: singleton jobs, user schedules and "
                     "the outbox drain are not being ticked", "start one or more `aos beat` processes")
    return _info("beat", f"beat leader: {row[0]}")


# --- broker --------------------------------------------------------------------------------------------


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(redis_py_url(url) or url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)


def _config_get(client: Any, key: str) -> str | None:
    """A Redis setting; None where CONFIG is disabled (managed Redis often renames it)."""
    try:
        value = client.config_get(key).get(key)
    except Exception:  # noqa: BLE001
        return None
    return value.decode() if isinstance(value, bytes) else value


def check_broker(settings: Settings) -> list[Finding]:
    if not settings.broker_url:
        return [_fail("broker", "AOS_BROKER_URL is not set",
                      "set AOS_BROKER_URL to a redis:// or amqp:// URL (or run inside `aos dev`)")]
    scheme = urlsplit(settings.broker_url).scheme
    if scheme.startswith("redis"):
        return _check_redis(settings)
    return _check_amqp(settings)


def _check_redis(settings: Settings) -> list[Finding]:
    assert settings.broker_url
    client = _redis_client(settings.broker_url)
    try:
        info = client.info()
    except Exception as exc:  # noqa: BLE001
        return [_fail("broker", f"cannot reach Redis: {type(exc).__name__}: {_first_line(exc)}",
                      "start Redis or correct AOS_BROKER_URL")]
    findings = [_ok("broker", f"Redis {info.get('redis_version', '?')} reachable")]

    policy = _config_get(client, "maxmemory-policy") or info.get("maxmemory_policy")
    if policy == "noeviction":
        findings.append(_ok("broker.maxmemory-policy", "noeviction: Redis refuses writes rather than dropping "
                            "queued messages"))
    else:
        findings.append(_fail(
            "broker.maxmemory-policy",
            f"maxmemory-policy is {policy or 'unknown (CONFIG and INFO hide it)'}: under memory pressure Redis "
            "may evict queued step messages",
            "`redis-cli CONFIG SET maxmemory-policy noeviction` now and `maxmemory-policy noeviction` in "
            "redis.conf (docker-compose.yml does this)"))

    appendonly = _config_get(client, "appendonly")
    if appendonly is None:
        appendonly = "yes" if str(info.get("aof_enabled", "0")) == "1" else "no"
    save = _config_get(client, "save")
    if appendonly == "yes":
        findings.append(_ok("broker.persistence", "append-only file on: queued messages survive a restart"))
    elif save:
        findings.append(_info("broker.persistence", f"RDB snapshots only (save {save!r}): a crash loses the "
                              "messages queued since the last snapshot",
                              "prefer `appendonly yes` (CONFIG SET appendonly yes, and in redis.conf)"))
    else:
        findings.append(_fail(
            "broker.persistence",
            "persistence is off (appendonly no, no save points): a Redis restart loses every queued message",
            "`redis-cli CONFIG SET appendonly yes` now and `appendonly yes` in redis.conf (docker-compose.yml "
            "does this)"))
    findings.append(_check_visibility(settings))
    return findings


def _check_amqp(settings: Settings) -> list[Finding]:
    from kombu import Connection

    try:
        with Connection(settings.broker_url, connect_timeout=TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        return [_fail("broker", f"cannot reach the AMQP broker: {type(exc).__name__}: {_first_line(exc)}",
                      "start RabbitMQ or correct AOS_BROKER_URL")]
    return [_ok("broker", "AMQP broker reachable"),
            _info("broker.visibility-timeout", "not used by RabbitMQ; its consumer_timeout (30 min by default) "
                  f"must exceed the longest step ({_longest_step(settings)[0]:.0f} s)")]


def _longest_step(settings: Settings) -> tuple[float, str]:
    """The longest a step message may stay unacknowledged while it runs (hard limit), and where it comes from."""
    from aos.skills.registry import default_registry

    grace = settings.hard_timeout_grace_s
    candidates = [(settings.default_step_timeout_s + grace, "AOS_DEFAULT_STEP_TIMEOUT_S + AOS_HARD_TIMEOUT_GRACE_S")]
    try:
        for skill in default_registry().all():
            candidates.append((float(skill.default_timeout_s) + grace, f"{skill.ref} default timeout + grace"))
    except Exception:  # noqa: BLE001 — a broken third-party skill is not this check's business
        log.debug("could not load the skill registry", exc_info=True)
    longest_plan = _longest_active_plan_timeout(settings)
    if longest_plan is not None:
        candidates.append((longest_plan + grace, "a queued or running run's step timeout_s + grace"))
    return max(candidates)


def _longest_active_plan_timeout(settings: Settings) -> float | None:
    if not settings.database_url:
        return None
    try:
        with _connect(settings.database_url) as conn:
            # One plan per distinct plan hash: a backlog of thousands of runs of a few workflows reads a few
            # plans, not thousands (unpacking every active plan made `aos doctor` take seconds).
            conn.execute("SET statement_timeout = 2000")
            value = _scalar(
                conn, "SELECT max((st->>'timeout_s')::float) FROM runs r, jsonb_array_elements(r.plan->'steps') st "
                "WHERE r.id IN (SELECT DISTINCT ON (plan_hash) id FROM runs WHERE status IN ('queued', 'running') "
                "ORDER BY plan_hash) AND st ? 'timeout_s'")
        return float(value) if value is not None else None
    except Exception:  # noqa: BLE001 — the database finding reports connection problems
        return None


def _check_visibility(settings: Settings) -> Finding:
    vt = settings.visibility_timeout_s
    longest, source = _longest_step(settings)
    problems = []
    if vt <= settings.max_countdown_s:
        problems.append(f"not above AOS_MAX_COUNTDOWN_S ({settings.max_countdown_s:.0f} s): a retry waiting for "
                        "its countdown is redelivered")
    if vt <= longest:
        problems.append(f"not above the longest step ({longest:.0f} s, {source}): a running step is redelivered")
    if problems:
        return _fail("broker.visibility-timeout", f"AOS_VISIBILITY_TIMEOUT_S={vt}: " + "; ".join(problems),
                     f"set AOS_VISIBILITY_TIMEOUT_S above {max(longest, settings.max_countdown_s) * 2:.0f} "
                     "(workers and beat alike), or lower AOS_MAX_COUNTDOWN_S / the step timeouts")
    return _ok("broker.visibility-timeout", f"{vt} s, above the longest countdown ({settings.max_countdown_s:.0f} s) "
               f"and the longest step ({longest:.0f} s)")


# --- postgres.query connections -----------------------------------------------------------------------


def check_pg_connections(settings: Settings) -> list[Finding]:
    """Each AOS_PG_CONNECTIONS entry: reachable, and its role too weak to reach the server's files or programs
    (a superuser's READ ONLY transaction still runs `COPY … TO PROGRAM`); a connection shared by every tenant is
    reported (info)."""
    findings: list[Finding] = []
    for name, conn_cfg in sorted(settings.pg_connections.items()):
        check = f"pg connection {name}"
        try:
            with open_connection(conn_cfg["url"], timeout_ms=settings.pg_query_timeout_ms,
                                 connect_timeout=TIMEOUT_S) as conn:
                power = role_power(conn)
        except Exception as exc:  # noqa: BLE001 — any failure is the finding; the URL is never shown
            findings.append(_fail(check, f"cannot connect ({type(exc).__name__}; the URL is not shown)",
                                  f"check the URL of {name!r} in AOS_PG_CONNECTIONS and that the server is up"))
            continue
        if power is not None:
            findings.append(_fail(check, f"{power}: postgres.query refuses it (PG_ROLE_TOO_POWERFUL)",
                                  "connect as a role with LOGIN, NOSUPERUSER, no membership in "
                                  "pg_read_server_files / pg_write_server_files / pg_execute_server_program, "
                                  "and SELECT on what plans may read (docs/security.md)"))
        else:
            findings.append(_ok(check, "reachable; its role is least-privilege"))
        if conn_cfg.get("tenants") == "*":
            findings.append(_info(f"{check} scope", "shared with every tenant (\"tenants\": \"*\")",
                                  "list the tenant ids that may use it, unless every tenant should"))
    return findings


# --- all -----------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def run_checks(environ: dict[str, str] | None = None) -> list[Finding]:
    """Every check, in order; settings are read afresh (from ``environ`` or the process environment)."""
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        return [_fail("config", str(exc), "fix the AOS_* variable the message names")]
    findings = [_ok("config", "AOS_* settings parse")]
    checks: list[Callable[[Settings], list[Finding]]] = [check_database, check_broker, check_pg_connections]
    for check in checks:
        findings.extend(check(settings))
    return findings


def healthy(findings: list[Finding]) -> bool:
    return all(f.ok for f in findings)
