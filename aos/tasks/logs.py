"""Housekeeping is quiet at INFO: the outbox drain (every 2 s), the reaper, user schedules, reconciliation
and retention tick all day, and Celery logs two INFO lines for every task it runs ("received",
"succeeded") and beat one for every task it sends. On an idle deployment that was most of the worker's log.

Those lines, for the housekeeping tasks only, are demoted to DEBUG: shown with ``--loglevel DEBUG``, never
lost at a level that keeps them. What a tick does that matters (a run re-published, a row that will not
deliver, a lease lost, rows deleted) is logged by the service at INFO or WARNING, and a task that fails is
logged by Celery at ERROR as before. Step tasks keep their lines: they are the work.
"""

from __future__ import annotations

import logging
from typing import Any

HOUSEKEEPING_TASKS = frozenset({"aos.outbox.drain", "aos.runs.reap", "aos.schedules.fire", "aos.dlq.reconcile",
                                "aos.retention.run", "aos.signals.expire", "aos.recovery.settle"})
# Celery's loggers of a task's routine life: received (worker), succeeded (trace), sent (beat)
ROUTINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


def _task_name(record: logging.LogRecord) -> str | None:
    args: Any = record.args
    if isinstance(args, dict):                      # "Task %(name)s[%(id)s] received / succeeded …"
        return args.get("name")
    if isinstance(args, tuple) and len(args) == 2:  # "Scheduler: Sending due task %s (%s)": entry, task
        return args[1] if isinstance(args[1], str) else None
    return None


class RoutineHousekeeping(logging.Filter):
    """Demotes the INFO lines of housekeeping tasks to DEBUG (kept only where DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or _task_name(record) not in HOUSEKEEPING_TASKS:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_housekeeping() -> None:
    """Install the filter on Celery's loggers (idempotent; done when the Celery app is imported)."""
    for name in ROUTINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RoutineHousekeeping) for f in logger.filters):
            logger.addFilter(RoutineHousekeeping())
