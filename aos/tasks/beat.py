"""Beat-driven jobs: drain the outbox, reap silent runs, retention, user schedules.

Every singleton job runs inside ``singleton(<task name>)``: only the process holding
its lease works, the others return at once (beat itself is leader-elected too, see
aos/tasks/scheduler.py). The outbox drain is not a singleton: it claims rows with
SKIP LOCKED and may run anywhere, any number of times.
"""

from __future__ import annotations

from aos.tasks.app import app


@app.task(name="aos.outbox.drain", ignore_result=True)
def drain() -> int:
    """Deliver pending outbox rows (run enqueues the broker missed, webhooks)."""
    from aos.services.outbox import drain_outbox
    from aos.tasks.publisher import CeleryPublisher

    return drain_outbox(CeleryPublisher())


@app.task(name="aos.runs.reap", ignore_result=True)
def reap() -> int:
    """Resume runs whose worker died or whose message was lost (silent past the grace, not in the queue)."""
    from aos.services.locks import singleton
    from aos.services.reaper import reap_silent_runs
    from aos.tasks.inspect import CeleryStepQueue

    with singleton("aos.runs.reap") as lease:
        return 0 if lease is None else reap_silent_runs(step_queue=CeleryStepQueue())


# Retention works in batches, each its own transaction: a time limit only stops it between two of them
# (the next tick goes on), so it may take longer than the default limits of a step.
@app.task(name="aos.retention.run", ignore_result=True, soft_time_limit=1800, time_limit=1860)
def retention() -> dict[str, int]:
    """Delete data older than the retention policy (AOS_RETENTION_*), in fenced batches."""
    from aos.services import retention as service
    from aos.services.locks import singleton

    with singleton("aos.retention.run") as lease:
        return {} if lease is None else service.run(lease=lease)


@app.task(name="aos.schedules.fire", ignore_result=True)
def fire_schedules() -> int:
    """Start one run for each due user schedule (once per tick, however many beats run)."""
    from aos.services.locks import singleton
    from aos.services.schedules import fire_due
    from aos.tasks.publisher import CeleryPublisher

    with singleton("aos.schedules.fire") as lease:
        return 0 if lease is None else len(fire_due(CeleryPublisher(), lease=lease))


@app.task(name="aos.signals.expire", ignore_result=True)
def expire_signals() -> int:
    """Fail the waiting steps whose deadline passed (SIGNAL_TIMEOUT; their on_error decides what follows)."""
    from aos.services.signals import expire_waits
    from aos.tasks.publisher import CeleryPublisher

    return expire_waits(CeleryPublisher())
