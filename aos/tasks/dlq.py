"""Dead-letter jobs: beat's reconciliation, and the ``task_failure`` handler that files crashed tasks.

The handler is connected when this module is imported, which the Celery app does for every worker
(it is in the app's ``include`` list) before the prefork pool forks, so every child has it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_failure

from aos.tasks.app import app

log = logging.getLogger(__name__)


@app.task(name="aos.dlq.reconcile", ignore_result=True)
def reconcile() -> dict[str, int] | None:
    """Resolve stale dead letters, re-drive transient ones, archive closed and old ones (leader only)."""
    from aos.services.dead_letters import reconcile as reconcile_dead_letters
    from aos.services.locks import singleton
    from aos.tasks.publisher import CeleryPublisher

    with singleton("aos.dlq.reconcile") as lease:
        if lease is None:
            return None  # another process leads this job right now
        return reconcile_dead_letters(CeleryPublisher(), fence=lease.fence)


@task_failure.connect
def file_crashed_task(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                      args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """A task raised (or hit its hard time limit) instead of finishing or retrying: keep it as a dead letter.

    A step that is redelivered (worker lost, ``reject_on_worker_lost``) never gets here: Celery sends
    ``task_failure`` only for work it will not run again by itself."""
    from aos.db.scope import as_operator
    from aos.services.dead_letters import record_task_failure

    if exception is not None and isinstance(exception, tuple(getattr(sender, "throws", ()))):
        return  # an expected failure (a step whose run failed): its run already holds the outcome
    name = getattr(sender, "name", None) or str(sender)
    try:
        with as_operator():  # a dead letter of any tenant's work (or of none)
            dl_id = record_task_failure(name, task_id, args, kwargs, exception or RuntimeError("unknown failure"))
        log.error("task %s[%s] crashed (%s); filed as dead letter %s", name, task_id, exception, dl_id)
    except Exception:  # noqa: BLE001 — often the database is why the task failed; the worker must go on
        log.exception("task %s[%s] crashed and could not be filed as a dead letter", name, task_id)
