"""The worker's side of multiprocess metrics (aos.observability): the parent serves one endpoint
for all its pool children; a child's live gauges go when it goes.

`aos worker` with AOS_WORKER_METRICS_PORT set has claimed and cleaned the group's
PROMETHEUS_MULTIPROC_DIR before exec'ing celery, so before the pool forks.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from aos import observability
from aos.config import get_settings

log = logging.getLogger(__name__)
_server: Any = None


@worker_ready.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    # worker_ready runs in the parent once the pool has forked: the children never inherit the server thread.
    global _server
    settings = get_settings()
    if not settings.worker_metrics_port or _server is not None:
        return
    pool = type(getattr(sender, "pool", None)).__module__ if sender is not None else ""
    if not observability.multiprocess_enabled() and "prefork" in pool:
        log.warning("AOS_WORKER_METRICS_PORT is set but metrics are not in multiprocess mode, so the pool "
                    "children's metrics are invisible: start the worker with `aos worker`")
    try:
        _server = observability.serve_metrics(settings.worker_metrics_bind, settings.worker_metrics_port)
    except OSError as exc:  # the worker still works; the "worker metrics target down" alert tells the operator
        log.error("cannot serve worker metrics on %s:%s: %s (AOS_WORKER_METRICS_PORT)",
                  settings.worker_metrics_bind, settings.worker_metrics_port, exc)
        return
    log.info("worker metrics on http://%s:%s/metrics (multiprocess dir %s)", settings.worker_metrics_bind,
             settings.worker_metrics_port, observability.multiprocess_dir())


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server = None


@worker_process_init.connect
def _child_starts(**_: Any) -> None:
    # Before this child touches a metric: a dead child's live gauges must not come back under a reused pid.
    observability.forget_process(os.getpid())


@worker_process_shutdown.connect
def _child_exits(pid: int | None = None, **_: Any) -> None:
    # Sent in the child as it exits normally; a killed child is noticed by the parent at scrape time.
    observability.forget_process(pid or os.getpid())
