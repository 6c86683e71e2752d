"""gunicorn settings of `aos api` (``-c python:aos.web.gunicorn_conf``): multiprocess metrics bookkeeping.

`aos api` has already claimed and cleaned the group's PROMETHEUS_MULTIPROC_DIR before exec'ing
gunicorn (aos.observability); these hooks run in the gunicorn master.
"""

from __future__ import annotations

from typing import Any

from aos.observability import forget_process


def child_exit(server: Any, worker: Any) -> None:
    # A worker that exited (or was killed: the master still sees it go) must not keep its live gauges.
    forget_process(worker.pid)


def post_fork(server: Any, worker: Any) -> None:
    # A new worker that got a dead one's pid must not inherit its live gauges.
    forget_process(worker.pid)
