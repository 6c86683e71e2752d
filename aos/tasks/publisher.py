"""The broker side of the outbox: runs become Celery chains of immutable step signatures.

A chain is published as Celery's own ``chain(...).apply_async()`` would publish it — the first
step's message carrying the rest as immutable signatures, last first, in its ``chain`` — but built
directly: Celery's canvas clones and freezes every signature of the chain to publish it, which
costs milliseconds per run on the submission path, for options AOS does not use.
"""

from __future__ import annotations

from typing import Any

from aos.config import get_settings
from aos.services.publisher import CONTINUE_TASK, STEP_TASK
from aos.tasks import redis_publish
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


def _signature(task: str, args: list[Any], **options: Any) -> dict[str, Any]:
    """An immutable signature as a chain message carries it."""
    return {"task": task, "args": args, "kwargs": {}, "options": options, "subtask_type": None, "immutable": True}


class CeleryPublisher:
    def enqueue_run(self, run_id: str, from_step: int, step_timeouts: list[float], generation: int = 0) -> None:
        grace = get_settings().hard_timeout_grace_s
        end = min(len(step_timeouts), from_step + SEGMENT)
        rest = [_signature(STEP_TASK, [run_id, i], task_id=step_task_id(run_id, i, generation),
                           soft_time_limit=step_timeouts[i], time_limit=step_timeouts[i] + grace)
                for i in range(from_step + 1, end)]
        if end < len(step_timeouts):
            rest.append(_signature(CONTINUE_TASK, [run_id, end, generation],
                                   task_id=continue_task_id(run_id, end, generation)))
        rest.reverse()  # the worker pops the next step from the end
        first = step_task_id(run_id, from_step, generation)
        settings = get_settings()
        broker = settings.effective_broker_url()
        if redis_publish.supported(broker):  # the same message, one LPUSH (aos.tasks.redis_publish)
            redis_publish.push(broker, settings.step_queue, redis_publish.message(
                STEP_TASK, [run_id, from_step], first, queue=settings.step_queue,
                soft_time_limit=step_timeouts[from_step], time_limit=step_timeouts[from_step] + grace,
                chain=rest or None))
            return
        app.send_task(STEP_TASK, args=[run_id, from_step], task_id=first, root_id=first,
                      soft_time_limit=step_timeouts[from_step], time_limit=step_timeouts[from_step] + grace,
                      chain=rest or None, retry=True, retry_policy=PUBLISH_RETRY)

    def revoke_steps(self, run_id: str, steps: range, generations: list[int]) -> None:
        task_ids = [step_task_id(run_id, i, g) for g in generations for i in steps]
        if task_ids:
            app.control.revoke(task_ids)
