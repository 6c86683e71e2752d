"""Recovery tasks: a few lines each; the work is in aos.services.recovery.

``aos.recovery.suggest`` runs after a run's failure is committed (the step task enqueues it, see
``after_step_stopped``), on the step queue the workers already consume; ``aos.recovery.settle`` (beat)
judges applied suggestions by what their step did next.
"""

from __future__ import annotations

from typing import Any

from aos.config import get_settings
from aos.services import recovery
from aos.services.recovery.sanitize import recovery_logger
from aos.tasks.app import app
from aos.tasks.publisher import CeleryPublisher

log = recovery_logger(__name__)  # failure text in these logs is sanitised
SUGGEST_TASK = "aos.recovery.suggest"
SETTLE_TASK = "aos.recovery.settle"


@app.task(name=SUGGEST_TASK, bind=True, acks_late=True, ignore_result=True, max_retries=3,
          soft_time_limit=120, time_limit=150)
def suggest(self: Any, run_id: str) -> None:
    """Look up (or learn) a recovery suggestion for the failed run ``run_id`` (idempotent)."""
    try:
        recovery.suggest_for_run(run_id, CeleryPublisher())
    except Exception as exc:  # noqa: BLE001 — recovery is advice: retry a little, then give up quietly
        if self.request.retries >= self.max_retries:
            # not a dead letter: nothing of the run is lost, and the run shows the catalog's advice meanwhile
            log.error("recovery of run %s gave up after %d attempts: %s", run_id, self.request.retries + 1, exc)
            return
        log.warning("recovery of run %s failed (will retry): %s", run_id, exc)
        raise self.retry(countdown=5 * (self.request.retries + 1), exc=exc) from exc


@app.task(name=SETTLE_TASK, ignore_result=True)
def settle() -> int:
    """Judge applied suggestions whose step succeeded or failed again (their patterns' success rates)."""
    return recovery.settle()


def after_step_stopped(run_id: str, reason: str) -> None:
    """Called by the step task once its decision is to stop (the settlement is committed): a failed run gets its
    recovery suggestion looked up by a worker. Never raises: a recovery problem never touches the run."""
    if not reason.startswith("run failed"):
        return
    try:
        settings = get_settings()
        if settings.recovery_enabled:
            # retry=False: a broker that cannot take the message now must not hold the step task up
            suggest.apply_async((run_id,), queue=settings.step_queue, retry=False)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not enqueue recovery of run %s: %s", run_id, exc)
