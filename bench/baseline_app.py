"""The baseline: a raw Celery app whose one task INSERTs one row into Postgres (no AOS code runs).

Its Celery settings mirror aos/tasks/app.py where they cost time on the hot path (late acks,
prefetch 1, JSON, no result backend, task events, time limits, visibility timeout), so the
difference the benchmark measures is AOS's own work per step.

Configured from the environment (set by bench.steps before it starts the worker):
BENCH_BROKER_URL, BENCH_DATABASE_URL (libpq form), BENCH_QUEUE.
Worker: ``celery -A bench.baseline_app worker -P prefork -c N -Q $BENCH_QUEUE``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

TABLE = "bench_baseline_steps"
CREATE_TABLE = f"CREATE TABLE IF NOT EXISTS {TABLE} (tag text NOT NULL, chain int NOT NULL, step int NOT NULL, "\
               "at timestamptz NOT NULL DEFAULT now())"

app = Celery("aos_bench_baseline")


def baseline_config() -> dict[str, Any]:
    queue = os.environ.get("BENCH_QUEUE", "aos.bench.baseline")
    return {
        "broker_url": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"),
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": {"visibility_timeout": 7200},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": queue,
        "task_soft_time_limit": 300,
        "task_time_limit": 310,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }


app.conf.update(baseline_config())

_conn = None  # one psycopg connection per worker process


@worker_process_init.connect
def _connect(**_: Any) -> None:
    global _conn
    import psycopg

    _conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)


@app.task(name="bench.insert", acks_late=True, ignore_result=True)
def insert(tag: str, chain: int, step: int) -> None:
    """One step: one INSERT, committed on its own (autocommit)."""
    assert _conn is not None, "worker_process_init did not run"
    _conn.execute(f"INSERT INTO {TABLE} (tag, chain, step) VALUES (%s, %s, %s)", (tag, chain, step))
