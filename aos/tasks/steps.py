"""Step tasks: a few lines each; the work is in aos.services.execution."""

from __future__ import annotations

from typing import Any

from aos.services.execution import execute_step
from aos.tasks.app import app, worker_id


@app.task(name="aos.steps.execute", bind=True, acks_late=True, reject_on_worker_lost=True,
          ignore_result=True, max_retries=None)
def execute(self: Any, run_id: str, step_index: int) -> None:
    """Run step ``step_index`` of run ``run_id`` (idempotent: a redelivery finds its checkpoint)."""
    decision = execute_step(run_id, step_index, worker_id())
    if decision.action == "retry":
        # Celery's retry keeps the rest of the chain on the new message.
        raise self.retry(countdown=decision.countdown, max_retries=None)
    if decision.action == "stop":
        self.request.chain = None  # the run is final (or owned by another chain): end this one here


@app.task(name="aos.runs.continue", bind=True, acks_late=True, ignore_result=True)
def continue_run(self: Any, run_id: str, from_step: int, generation: int) -> None:
    """Publish the next segment of a long run's chain."""
    from aos.services.runs import enqueue_segment
    from aos.tasks.publisher import CeleryPublisher

    enqueue_segment(run_id, from_step, generation, CeleryPublisher())
