"""The broker side of the outbox: runs become Celery chains of immutable step signatures."""

from __future__ import annotations

from celery import chain

from aos.config import get_settings
from aos.services.publisher import CONTINUE_TASK, STEP_TASK
from aos.tasks.app import app

# A chain message carries the rest of its chain; segments keep a long run's messages small.
SEGMENT = 64
# Publishing gives up fast when the broker is down: the outbox row stays pending and beat retries.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}


def step_task_id(run_id: str, index: int, generation: int) -> str:
    return f"{run_id}:{index}:{generation}"


def continue_task_id(run_id: str, from_step: int, generation: int) -> str:
    # Starts with the run id like a step's, so the reaper sees which run a waiting message is for.
    return f"{run_id}:continue-{from_step}:{generation}"


class CeleryPublisher:
    def enqueue_run(self, run_id: str, from_step: int, step_timeouts: list[float], generation: int = 0) -> None:
        grace = get_settings().hard_timeout_grace_s
        end = min(len(step_timeouts), from_step + SEGMENT)
        sigs = [app.signature(STEP_TASK, (run_id, i), immutable=True, task_id=step_task_id(run_id, i, generation),
                              soft_time_limit=step_timeouts[i], time_limit=step_timeouts[i] + grace)
                for i in range(from_step, end)]
        if end < len(step_timeouts):
            sigs.append(app.signature(CONTINUE_TASK, (run_id, end, generation), immutable=True,
                                      task_id=continue_task_id(run_id, end, generation)))
        chain(*sigs).apply_async(retry=True, retry_policy=PUBLISH_RETRY)

    def revoke_steps(self, run_id: str, steps: range, generations: list[int]) -> None:
        task_ids = [step_task_id(run_id, i, g) for g in generations for i in steps]
        if task_ids:
            app.control.revoke(task_ids)
