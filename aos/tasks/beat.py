"""Beat-driven jobs: drain the outbox, reap silent runs."""

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
    """Resume runs whose worker died (no lease, no wake-up due, silent past the grace)."""
    from aos.services.reaper import reap_silent_runs

    return reap_silent_runs()
