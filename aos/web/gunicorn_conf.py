"""gunicorn settings of `aos api` (``-c python:aos.web.gunicorn_conf``): multiprocess metrics bookkeeping.

`aos api` has already claimed and cleaned the group's PROMETHEUS_MULTIPROC_DIR before exec'ing
gunicorn (aos.observability); these hooks run in the gunicorn master.
"""

from __future__ import annotations

import logging
from typing import Any

from aos.config import get_settings
from aos.observability import forget_process, serve_metrics

log = logging.getLogger("aos.api")


def when_ready(server: Any) -> None:
    # AOS_API_METRICS_PORT: /metrics on a port of its own (a private interface, a separate bind), served by the
    # master from the group's files, so the public port never shows it
    settings = get_settings()
    if settings.api_metrics_port:
        serve_metrics(settings.api_metrics_bind, settings.api_metrics_port, database=True)
        log.info("API metrics on http://%s:%s/metrics", settings.api_metrics_bind, settings.api_metrics_port)


def child_exit(server: Any, worker: Any) -> None:
    # A worker that exited (or was killed: the master still sees it go) must not keep its live gauges.
    forget_process(worker.pid)


def post_fork(server: Any, worker: Any) -> None:
    # A new worker that got a dead one's pid must not inherit its live gauges.
    forget_process(worker.pid)
