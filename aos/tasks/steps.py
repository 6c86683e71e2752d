"""Step tasks: a few lines each; the work is in aos.services.execution."""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from aos.db.scope import as_operator
from aos.db.session import TRANSIENT_ERRORS
from aos.runtime.backoff import retry_countdown
from aos.services.enqueue import publish_segment
from aos.services.execution import execute_step, step_crashed
from aos.services.publisher import CONTINUE_TASK, STEP_TASK
from aos.services.replay_amendments import after_run_failed
from aos.services.runs import deliver_admitted
from aos.tasks.app import app, delivery_id
from aos.tasks.publisher import CeleryPublisher
from aos.tasks.recovery import after_step_stopped
from aos.values import RetryPolicy

log = logging.getLogger(__name__)

INFRA_RETRY = RetryPolicy(max_attempts=1_000_000, backoff_s=0.5, backoff_max_s=30)
# How many gave-up deliveries a retry names: only the last one that claimed holds the lease, and a
# delivery that failed before its claim passes on the names it was given.
ABANDONED_KEPT = 4


def _chained_steps(chain: list[Any] | None, run_id: str, index: int) -> int:
    """How many of the run's next steps, in order, the chain holds next (its end is the next message)."""
    n = 0
    for sig in reversed(chain or ()):
        if not isinstance(sig, dict) or sig.get("task") != STEP_TASK or list(sig.get("args") or ()) != \
                [run_id, index + 1 + n]:
            break
        n += 1
    return n


class StepFailed(Exception):
    """The step failed and so did its run (the run's error code and message say why)."""


@app.task(name=STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          ignore_result=True, max_retries=None, throws=(StepFailed,))
def execute(self: Any, run_id: str, step_index: int, abandoned: list[str] | None = None, crashes: int = 0) -> None:
    """Run step ``step_index`` of run ``run_id`` (idempotent: a redelivery finds its checkpoint)."""
    delivery = delivery_id()
    abandoned = abandoned or []
    try:
        # a pure step goes without a claim only on its first delivery: a redelivery (its worker died) or a
        # retry takes the claimed path, which counts deliveries towards the poison quarantine
        first = self.request.retries == 0 and not (self.request.delivery_info or {}).get("redelivered")
        decision = execute_step(run_id, step_index, delivery, abandoned, first_delivery=first,
                                inline_limit=_chained_steps(self.request.chain, run_id, step_index))
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
    except Exception as exc:  # noqa: BLE001 — a bug or an input no limit caught: never a silent loop
        log.exception("run %s step %d: the step path raised", run_id, step_index)
        crashes += 1
        decided = step_crashed(run_id, step_index, delivery, abandoned, crashes, f"{type(exc).__name__}: {exc}"[:500])
        if decided is None:  # delivered again (a Celery retry), up to AOS_POISON_DELIVERIES times
            countdown = retry_countdown(run_id, f"crash:{step_index}", crashes, INFRA_RETRY, cap_s=60)
            raise self.retry(kwargs={"abandoned": [*abandoned[-(ABANDONED_KEPT - 1):], delivery],
                                     "crashes": crashes}, countdown=countdown, max_retries=None, exc=exc) from exc
        decision = decided
    if decision.admitted:  # runs this run's end gave its concurrency slot to
        with as_operator():  # the engine publishing runs of the same tenant
            deliver_admitted(list(decision.admitted), CeleryPublisher())
    for _ in range(decision.inlined):  # steps this delivery ran itself: their messages are not needed
        self.request.chain.pop()
    if decision.action == "retry":
        # Celery's retry keeps the rest of the chain on the new message.
        raise self.retry(countdown=decision.countdown, max_retries=None)
    if decision.action in ("stop", "fail"):
        self.request.chain = None  # the run is final (or owned by another chain): end this one here
    if decision.action == "fail":
        # off the step's path, once the failure is committed: a golden replay resumes where its recording was
        # amended (as a person resumed the recorded run); any other failed run gets its recovery lookup
        if not after_run_failed(run_id, CeleryPublisher()):
            after_step_stopped(run_id, decision.reason)
        # The task fails too, so that Flower and the task events show a failed step as failed (an expected
        # error: logged in one line, no traceback; the message is acked like any finished delivery).
        raise StepFailed(decision.reason)



@app.task(name=CONTINUE_TASK, bind=True, acks_late=True, ignore_result=True)
def continue_run(self: Any, run_id: str, from_step: int, generation: int) -> None:
    """Publish the next segment of a long run's chain."""
    publish_segment(run_id, from_step, generation, CeleryPublisher())
