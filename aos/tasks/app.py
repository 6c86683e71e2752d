"""The Celery app. Settings marked "requirement" are the engine's guarantees (docs/architecture.md) and dodge
known Celery bugs."""

from __future__ import annotations

import gc
import os
import socket
import threading
import uuid
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

from aos.config import Settings, get_settings
from aos.redaction import install_log_redaction
from aos.services.publisher import CONTINUE_TASK, STEP_TASK
from aos.tasks import logs, resilience

# A Redis restart while a step is in flight must not kill the worker (see aos/tasks/resilience.py).
resilience.install()
# Housekeeping ticks log at DEBUG, not INFO: an idle worker's log stays readable (see aos/tasks/logs.py).
logs.quiet_housekeeping()

app = Celery("aos", include=["aos.tasks.steps", "aos.tasks.beat", "aos.tasks.worker_metrics", "aos.tasks.dlq",
                            "aos.tasks.recovery"])


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.effective_broker_url(),
        # requirement: state is ours (Postgres); Celery results would be a second, lossy copy
        "task_ignore_result": True,
        "result_backend": None,
        # requirement: at-least-once delivery; a step that dies mid-way is redelivered, not lost
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # requirement: JSON only — a pickled message is code execution on the worker
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # requirement: retry countdowns (capped at AOS_MAX_COUNTDOWN_S) stay below the visibility timeout,
        # or Redis redelivers a message that is only waiting for its ETA (celery#5935)
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        # requirement: Flower sees everything
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": "aos.default",
        "task_routes": {STEP_TASK: {"queue": settings.step_queue}, CONTINUE_TASK: {"queue": settings.step_queue}},
        # requirement: hard limit above the soft one (per-step limits are set on each message)
        "task_soft_time_limit": 300,
        "task_time_limit": 300 + int(settings.hard_timeout_grace_s),
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "beat_schedule": {
            "aos.outbox.drain": {"task": "aos.outbox.drain", "schedule": settings.outbox_interval_s},
            "aos.runs.reap": {"task": "aos.runs.reap", "schedule": settings.reaper_interval_s},
            "aos.signals.expire": {"task": "aos.signals.expire", "schedule": settings.signal_deadline_interval_s,
                                   "options": {"expires": settings.signal_deadline_interval_s}},
            # expires: a tick that waited a whole interval in the queue is superseded by the next one
            "aos.retention.run": {"task": "aos.retention.run", "schedule": settings.retention_interval_s,
                                  "options": {"expires": settings.retention_interval_s}},
            "aos.schedules.fire": {"task": "aos.schedules.fire", "schedule": settings.schedules_interval_s,
                                   "options": {"expires": settings.schedules_interval_s}},
            # expires: a reconciliation that waited a whole interval in the queue is superseded by the next one
            "aos.dlq.reconcile": {"task": "aos.dlq.reconcile", "schedule": settings.dlq_reconcile_interval_s,
                                  "options": {"expires": settings.dlq_reconcile_interval_s}},
            # expires: a settle tick superseded by the next one is worth nothing
            "aos.recovery.settle": {"task": "aos.recovery.settle", "schedule": settings.recovery_verify_s,
                                    "options": {"expires": settings.recovery_verify_s}},
        },
        # only the beat holding the `aos.beat` lease sends ticks: two beats happen (celery#2856, #4808)
        "beat_scheduler": "aos.tasks.scheduler:LeaderScheduler",
        "timezone": "UTC",
    }


_configuring = threading.local()


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    # Read configuration when Celery first needs it, not at import time. Touching ``sender.conf`` here loads
    # the configuration, which sends on_configure again: the nested call returns, the outer one updates.
    if getattr(_configuring, "active", False):
        return
    _configuring.active = True
    try:
        sender.conf.update(celery_config(get_settings()))
    finally:
        _configuring.active = False


@worker_init.connect
def _redact_logs(**_: Any) -> None:
    # a step's args, a provider's error, a connection URL: nothing logged by the worker carries a secret
    install_log_redaction()


@worker_init.connect
def _load_skills_before_fork(**_: Any) -> None:
    # Import every skill and warm it up (the LLM SDKs take seconds) once in the parent, before the pool
    # forks: loaded lazily, the first step of each child would spend its soft time limit importing.
    from aos.skills.registry import default_registry

    default_registry().warm_up()
    # Everything loaded so far lives as long as the worker: out of the collector's sight, a child's
    # collections stay small (each step allocates a few hundred objects) and never write to the pages
    # it shares with the parent. (The pool forks after this signal.)
    gc.freeze()


@worker_process_init.connect
def _fresh_engine_per_child(**_: Any) -> None:
    # requirement: one SQLAlchemy engine per worker process, never inherited across fork
    from aos.db.session import reset_engine

    reset_engine()
    gc.freeze()


# Row-level security (aos/db/scope.py): a step task scopes itself to its run's tenant; every other task
# (beat's jobs, continuing a chain) works across tenants by nature and runs as the operator.
_TENANT_TASKS = frozenset({STEP_TASK})
_task_scopes: dict[str, object] = {}


@task_prerun.connect
def _enter_task_scope(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from aos.db import scope

    if task_id is not None:
        _task_scopes[task_id] = scope.enter(scope.NOBODY if getattr(task, "name", None) in _TENANT_TASKS
                                            else scope.OPERATOR)


@task_postrun.connect
def _leave_task_scope(task_id: str | None = None, **_: Any) -> None:
    from aos.db import scope

    token = _task_scopes.pop(task_id, None) if task_id is not None else None
    if token is not None:
        scope.leave(token)


def worker_id() -> str:
    """This worker process: host and pid, so an operator can find it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def delivery_id() -> str:
    """Who holds a lease: one delivery of a step task, in the process ``worker_id()`` names. Two
    deliveries of one step in the same process (a redelivery after the first gave up) are different
    holders, so a lease is only ever taken over by the delivery that was told it may."""
    return f"{worker_id()}/{uuid.uuid4().hex[:12]}"
