"""How services reach the broker without importing Celery: a small protocol the task layer implements."""

from __future__ import annotations

from typing import Protocol


class Publisher(Protocol):
    def enqueue_run(self, run_id: str, from_step: int, step_timeouts: list[float], generation: int = 0) -> None:
        """Publish the Celery chain of a run's steps from ``from_step`` on. ``generation`` (the outbox
        row's id) makes task ids unique per enqueue, so revoking a cancelled run's tasks never
        blocks the tasks of a later resume."""

    def revoke(self, task_ids: list[str]) -> None:
        """Revoke queued or countdown-waiting step tasks (best effort: the DB check is the guarantee)."""
