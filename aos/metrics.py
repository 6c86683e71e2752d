"""Every Prometheus metric AOS exports, and the closed sets their label values come from.

One place for each fact: a label value that is not in its closed set is mapped
to ``other`` (and logged once), so a typo or a new code can never explode the
series count, and no series is ever labelled ``unknown``. Call the small
functions below from services; never create metrics elsewhere.

Multiprocess mode (gunicorn workers, prefork children) is set up by
``aos.observability`` before prometheus_client is imported; these definitions
work in both modes.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from aos.db import vocabulary

if TYPE_CHECKING:
    from aos.runtime.outcome import StructuredOutcome

log = logging.getLogger(__name__)

OTHER = "other"
NONE = "none"

# --- closed label sets -----------------------------------------------------------------
RUN_STATUS = frozenset(vocabulary.RUN_STATUSES)
STEP_STATUS = frozenset(vocabulary.CHECKPOINT_STATUSES) | {"retrying", "fallback"}
OUTBOX_TOPICS = frozenset(vocabulary.OUTBOX_TOPICS)
OUTBOX_RESULTS = frozenset({"delivered", "retry", "dead"}) | frozenset(vocabulary.OUTBOX_STATUSES)
DEAD_LETTER_KINDS = frozenset(vocabulary.DEAD_LETTER_KINDS)
RETENTION_TABLES = frozenset({"runs", "checkpoints", "run_events", "outbox", "replay_log", "dead_letter_archive"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_STATUS_CLASSES = frozenset({"1xx", "2xx", "3xx", "4xx", "5xx"})
UNMATCHED_ROUTE = "unmatched"  # a request no route of the API answers (a 404 or 405 before any view)
# The route templates (`/api/v1/runs/<run_id>`) of the API: its URL map, declared by the app factory.
_http_routes: frozenset[str] = frozenset({UNMATCHED_ROUTE})
SINGLETON_JOBS = frozenset({"aos.outbox.drain", "aos.runs.reap", "aos.dlq.reconcile", "aos.retention.run",
                            "aos.schedules.fire", "aos.views.refresh", vocabulary.BEAT_LEASE})


@lru_cache(maxsize=1)
def _skills() -> frozenset[str]:
    from aos.skills.registry import default_registry

    return frozenset(s.name for s in default_registry().all())


@lru_cache(maxsize=1)
def _codes() -> frozenset[str]:
    from aos.runtime.catalog import CATALOG

    return frozenset(CATALOG.codes())


_warned: set[tuple[str, str]] = set()


def closed(value: str | None, allowed: frozenset[str], what: str) -> str:
    """``value`` if it belongs to ``allowed``; ``none`` for None; else ``other`` (logged once)."""
    if value is None:
        return NONE
    if value in allowed:
        return value
    if (what, value) not in _warned:
        _warned.add((what, value))
        log.warning("metric label %s=%r is outside its closed set; exported as %r", what, value, OTHER)
    return OTHER


def skill_label(skill: str) -> str:
    return closed(skill.split("@")[0], _skills(), "skill")


def code_label(code: str | None) -> str:
    return closed(code, _codes(), "code")


# --- metrics ---------------------------------------------------------------------------
RUNS_SUBMITTED = Counter("aos_runs_submitted_total", "Runs accepted by the API or a schedule.")
RUNS_FINISHED = Counter("aos_runs_finished_total", "Runs that reached a final state.", ["status"])
STEPS = Counter("aos_steps_total", "Step attempts finished, by skill, status and catalog code.",
                ["skill", "status", "code"])
STEP_SECONDS = Histogram("aos_step_duration_seconds", "Wall time of one step attempt.", ["skill"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
STEP_OUTPUT_BYTES = Histogram("aos_step_output_bytes", "Size of a step attempt's stored output and raw response, "
                              "as JSON (bytes).", ["skill"],
                              buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216))
RETRIES = Counter("aos_step_retries_total", "Step retries scheduled, by skill and catalog code.", ["skill", "code"])
SPEND_USD = Counter("aos_budget_spend_usd_total", "Money spent by steps (USD), by skill.", ["skill"])
TOKENS = Counter("aos_tokens_total", "LLM tokens spent by steps, by skill.", ["skill"])
OUTBOX_DELIVERIES = Counter("aos_outbox_deliveries_total", "Outbox delivery attempts, by topic and result.",
                            ["topic", "result"])
DEAD_LETTERS = Counter("aos_dead_letters_created_total", "Dead letters written, by kind.", ["kind"])
CIRCUIT_STATES = frozenset({"opened", "half_open", "closed"})
CIRCUIT_TRANSITIONS = Counter("aos_circuit_transitions_total", "Circuit breaker transitions, by skill and the state "
                              "entered (the upstream is in the log line and the timeline event).", ["skill", "state"])
# The label is `lock`, never `job`: Prometheus owns `job` (the scrape job) and renames a `job` label it scrapes to
# `exported_job`, which would blind every query and alert on these series.
LOCK_LEADER = Gauge("aos_lock_leader", "1 while this process holds the lease of a singleton job, by lock.", ["lock"],
                    multiprocess_mode="livemax")
LOCK_ACQUIRED = Counter("aos_lock_acquired_total",
                        "Leases taken, by lock: each run of a singleton job takes its lease (and releases it when "
                        "done); aos.beat counts each time a beat becomes leader.", ["lock"])
RETENTION_DELETED = Counter("aos_retention_deleted_total", "Rows deleted by retention, by table.", ["table"])
HTTP_REQUESTS = Counter("aos_http_requests_total", "API requests answered, by method, route template and status "
                        "class.", ["method", "route", "status"])
HTTP_SECONDS = Histogram("aos_http_request_duration_seconds", "Time to answer an API request (until the response "
                         "starts: an event stream counts its opening), by method, route template and status class.",
                         ["method", "route", "status"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# livesum: a worker child killed mid-step has its file removed (aos.observability), so its step stops counting
STEPS_RUNNING = Gauge("aos_steps_in_progress", "Step attempts executing a skill right now, by skill.", ["skill"],
                      multiprocess_mode="livesum")

# --- scrape-time gauges ----------------------------------------------------------------
# Read from Postgres when the API's /metrics is scraped (aos.observability.DatabaseCollector), not kept in a
# process: they describe the whole deployment. name -> (help, label name or None, closed label values).
ACTIVE_RUN_STATUSES = frozenset({"queued", "running"})
SCRAPE_GAUGES: dict[str, tuple[str, str | None, frozenset[str]]] = {
    "aos_database_up": ("1 if the API could read the gauges below from Postgres at this scrape.", None,
                        frozenset()),
    "aos_outbox_pending_messages": ("Outbox rows waiting for delivery, by topic.", "topic", OUTBOX_TOPICS),
    "aos_outbox_oldest_pending_age_seconds": ("Age of the oldest pending outbox row, by topic (0 if none).",
                                              "topic", OUTBOX_TOPICS),
    "aos_dead_letters_open": ("Dead letters waiting for replay or discard, by kind.", "kind", DEAD_LETTER_KINDS),
    "aos_runs_active": ("Runs not yet final, by status.", "status", ACTIVE_RUN_STATUSES),
    "aos_lock_holders": ("Singleton-job leases held right now (0 or 1), by lock.", "lock", SINGLETON_JOBS),
    "aos_lock_expiry_timestamp_seconds": ("When the job's lease expires (Unix time); far in the past means no "
                                          "process has run the job lately.", "lock", SINGLETON_JOBS),
    "aos_lock_fencing_token": ("Fencing token of the job's lease; it grows at every change of leader.", "lock",
                               SINGLETON_JOBS),
}


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: the step path counts several series per step, and
    prometheus_client validates label values at every ``labels()`` call."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def run_submitted() -> None:
    RUNS_SUBMITTED.inc()


def run_finished(status: str) -> None:
    _child(RUNS_FINISHED, closed(status, RUN_STATUS, "status")).inc()


def step_finished(skill: str, status: str, code: str | None, seconds: float | None,
                  cost_usd: float = 0.0, tokens: int = 0) -> None:
    sk = skill_label(skill)
    _child(STEPS, sk, closed(status, STEP_STATUS, "step_status"), code_label(code)).inc()
    if seconds is not None:
        _child(STEP_SECONDS, sk).observe(seconds)
    if cost_usd:
        _child(SPEND_USD, sk).inc(cost_usd)
    if tokens:
        _child(TOKENS, sk).inc(tokens)


def step_outcome(skill: str, status: str, outcome: StructuredOutcome, code: str | None = None) -> None:
    """step_finished with the code, duration, cost and tokens taken from the attempt's outcome."""
    ms = outcome.timing.duration_ms
    step_finished(skill, status, code or (outcome.error.code if outcome.error else None),
                  ms / 1000.0 if ms is not None else None, outcome.usage.cost_usd, outcome.usage.tokens)


def step_output_size(skill: str, size: int) -> None:
    _child(STEP_OUTPUT_BYTES, skill_label(skill)).observe(size)


def step_retried(skill: str, code: str | None) -> None:
    RETRIES.labels(skill_label(skill), code_label(code)).inc()


def outbox_delivery(topic: str, result: str) -> None:
    OUTBOX_DELIVERIES.labels(closed(topic, OUTBOX_TOPICS, "topic"), closed(result, OUTBOX_RESULTS, "result")).inc()


def circuit_transition(skill: str, state: str) -> None:
    CIRCUIT_TRANSITIONS.labels(skill_label(skill), closed(state, CIRCUIT_STATES, "state")).inc()


def dead_letter_created(kind: str) -> None:
    DEAD_LETTERS.labels(closed(kind, DEAD_LETTER_KINDS, "kind")).inc()


def lock_leadership(lock: str, leader: bool, *, acquired: bool = False) -> None:
    label = closed(lock, SINGLETON_JOBS, "lock")
    LOCK_LEADER.labels(label).set(1 if leader else 0)
    if acquired:
        LOCK_ACQUIRED.labels(label).inc()


def declare_http_routes(routes: frozenset[str]) -> None:
    """The closed set of the ``route`` label: the API's URL map (called by the app factory)."""
    global _http_routes
    _http_routes = frozenset(routes) | {UNMATCHED_ROUTE}


def http_routes() -> frozenset[str]:
    return _http_routes


def http_request(method: str, route: str | None, status: int, seconds: float) -> None:
    labels = (closed(method, HTTP_METHODS, "method"), closed(route or UNMATCHED_ROUTE, _http_routes, "route"),
              closed(f"{status // 100}xx", HTTP_STATUS_CLASSES, "status"))
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_SECONDS.labels(*labels).observe(seconds)


def step_running(skill: str) -> AbstractContextManager[object]:
    """``with step_running(skill):`` around a skill call counts it in aos_steps_in_progress."""
    return _child(STEPS_RUNNING, skill_label(skill)).track_inprogress()


def retention_deleted(table: str, rows: int) -> None:
    if rows:
        RETENTION_DELETED.labels(closed(table, RETENTION_TABLES, "table")).inc(rows)


# --- failure recovery (aos/services/recovery) -------------------------------------------------------------

RECOVERY_LAYERS = frozenset(vocabulary.RECOVERY_LAYERS)
RECOVERY_PROVIDER_KINDS = frozenset({"embedding", "llm"})
RECOVERY_RESULTS = frozenset({"succeeded", "failed", "abandoned"})
RECOVERY_LOOKUPS = Counter("aos_recovery_lookups_total",
                           "Recovery suggestions answered, by the layer that answered (cache, vector, llm, catalog).",
                           ["layer"])
RECOVERY_SECONDS = Histogram("aos_recovery_lookup_seconds", "Time of one recovery lookup, by the layer that answered.",
                             ["layer"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5, 30))
RECOVERY_PROVIDER_CALLS = Counter("aos_recovery_provider_calls_total",
                                  "Embedding and LLM calls made by recovery, by kind.", ["kind"])
RECOVERY_TOKENS = Counter("aos_recovery_tokens_total", "Tokens spent by recovery's providers, by kind.", ["kind"])
RECOVERY_COST_USD = Counter("aos_recovery_cost_usd_total", "Money spent by recovery's providers (USD), by kind.",
                            ["kind"])
RECOVERY_QUOTA_REFUSED = Counter("aos_recovery_quota_refused_total",
                                 "Provider calls recovery skipped because the tenant's daily quota was spent.", ["kind"])
RECOVERY_APPLIED = Counter("aos_recovery_applied_total", "Applied suggestions by what came of them: the step "
                           "succeeded, failed, or the run was cancelled first (abandoned).",
                           ["result"])


def recovery_lookup(layer: str, seconds: float) -> None:
    label = closed(layer, RECOVERY_LAYERS, "layer")
    _child(RECOVERY_LOOKUPS, label).inc()
    _child(RECOVERY_SECONDS, label).observe(seconds)


def recovery_provider_call(kind: str, tokens: int = 0, cost_usd: float = 0.0) -> None:
    label = closed(kind, RECOVERY_PROVIDER_KINDS, "kind")
    _child(RECOVERY_PROVIDER_CALLS, label).inc()
    if tokens:
        _child(RECOVERY_TOKENS, label).inc(tokens)
    if cost_usd:
        _child(RECOVERY_COST_USD, label).inc(cost_usd)


def recovery_quota_refused(kind: str) -> None:
    _child(RECOVERY_QUOTA_REFUSED, closed(kind, RECOVERY_PROVIDER_KINDS, "kind")).inc()


def recovery_applied(result: str) -> None:
    _child(RECOVERY_APPLIED, closed(result, RECOVERY_RESULTS, "result")).inc()
