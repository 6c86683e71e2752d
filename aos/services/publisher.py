"""How services reach the broker without importing Celery: a small protocol the task layer implements."""

from __future__ import annotations

from typing import Protocol

# The engine's task names: a step message is STEP_TASK(run_id, step_index); a long run's chain ends in
# CONTINUE_TASK(run_id, from_step, generation), which publishes the next segment.
STEP_TASK = "aos.steps.execute"
CONTINUE_TASK = "aos.runs.continue"


class Publisher(Protocol):
    def enqueue_run(self, run_id: str, from_step: int, step_timeouts: list[float], generation: int = 0) -> None:
        """Publish the Celery chain of a run's steps from ``from_step`` on. ``generation`` (the outbox
        row's id) makes task ids unique per enqueue, so revoking a cancelled run's tasks never
        blocks the tasks of a later resume."""

    def revoke_steps(self, run_id: str, steps: range, generations: list[int]) -> None:
        """Revoke a run's queued or countdown-waiting step tasks of the given enqueue generations
        (best effort: the status check in every claim is the guarantee)."""
