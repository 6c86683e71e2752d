"""Step tasks: a few lines each; the work is in aos.services.execution."""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from aos.db.direct import TRANSIENT_ERRORS
from aos.runtime.backoff import retry_countdown
from aos.services.enqueue import publish_segment
from aos.services.execution import execute_step
from aos.services.publisher import CONTINUE_TASK, STEP_TASK
from aos.tasks.app import app, delivery_id
from aos.tasks.publisher import CeleryPublisher
from aos.tasks.recovery import after_step_stopped
from aos.values import RetryPolicy

INFRA_RETRY = RetryPolicy(max_attempts=1_000_000, backoff_s=0.5, backoff_max_s=30)
# How many gave-up deliveries a retry names: only the last one that claimed holds the lease, and a
# delivery that failed before its claim passes on the names it was given.
ABANDONED_KEPT = 4


@app.task(name=STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          ignore_result=True, max_retries=None)
def execute(self: Any, run_id: str, step_index: int, abandoned: list[str] | None = None) -> None:
    """Run step ``step_index`` of run ``run_id`` (idempotent: a redelivery finds its checkpoint)."""
    delivery = delivery_id()
    abandoned = abandoned or []
    try:
        decision = execute_step(run_id, step_index, delivery, abandoned)
    except (SoftTimeLimitExceeded, *TRANSIENT_ERRORS) as exc:
        # Outside the skill (claiming, writing the checkpoint): the transaction rolled back, nothing
        # was recorded; deliver again later. The database outage case waits out the backoff. The claim
        # may have committed: the retry names this delivery (and the last few it retried, whose claims
        # may stand when this one never got as far) so that it takes their lease over at once, wherever
        # it runs, instead of waiting the lease out.
        attempt = self.request.retries + 1
        countdown = retry_countdown(run_id, f"task:{step_index}", attempt, INFRA_RETRY, cap_s=60)
        raise self.retry(kwargs={"abandoned": [*abandoned[-(ABANDONED_KEPT - 1):], delivery]},
                         countdown=countdown, max_retries=None, exc=exc) from exc
    if decision.action == "retry":
        # Celery's retry keeps the rest of the chain on the new message.
        raise self.retry(countdown=decision.countdown, max_retries=None)
    if decision.action == "stop":
        self.request.chain = None  # the run is final (or owned by another chain): end this one here
        after_step_stopped(run_id, decision.reason)  # a failed run's recovery lookup, off the step's path


@app.task(name=CONTINUE_TASK, bind=True, acks_late=True, ignore_result=True)
def continue_run(self: Any, run_id: str, from_step: int, generation: int) -> None:
    """Publish the next segment of a long run's chain."""
    publish_segment(run_id, from_step, generation, CeleryPublisher())
