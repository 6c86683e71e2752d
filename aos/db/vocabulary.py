"""The closed sets of values the database's CHECK constraints hold: statuses, kinds, event types, topics.

Apart from the models (``aos.db.models``), so that what only names a status — the CLI's options, metric
labels, the API's enumerations — need not import SQLAlchemy to do it. The models build their constraints
from these; a value added here needs a migration that widens the constraint.
"""

from __future__ import annotations

# waiting: parked until a signal arrives or its deadline passes (no worker held; the wait is a run_waits row)
RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled", "dead_lettered")
FINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "cancelled", "dead_lettered"})
CHECKPOINT_STATUSES = ("running", "succeeded", "failed", "skipped")
OUTBOX_STATUSES = ("pending", "delivered", "dead")
DEAD_LETTER_STATUSES = ("open", "replayed", "discarded", "resolved")
DEAD_LETTER_KINDS = ("step", "outbox", "task")
# a wait: open, then ended by its signal, its deadline, or the run leaving it (cancel, resume)
WAIT_STATUSES = ("waiting", "signalled", "expired", "cancelled")
# what parked the run: a step of a waiting skill (signal.wait, human.approve) or an ESCALATE on_error
WAIT_KINDS = ("signal", "escalation")

# The timeline: the closed set of run_events.type values; metrics and docs take their labels from here.
RUN_EVENT_TYPES = (
    "run.queued", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.resumed",
    "step.started", "step.succeeded", "step.retrying", "step.failed", "step.skipped", "step.fallback",
    "step.redelivered", "budget.warning", "budget.exceeded",
    "run.waiting", "signal.received", "signal.expired", "step.deferred",
    "circuit.opened", "circuit.half_open", "circuit.closed", "run.recovery", "run.amended",
)
# Events that also leave as webhooks through the outbox (in the order docs and the API list them).
WEBHOOK_EVENTS = ("run.succeeded", "run.failed", "budget.warning", "run.waiting", "run.recovery")
# The outbox topic that publishes a run's step messages; every other topic is a webhook event.
ENQUEUE_TOPIC = "run.enqueue"
OUTBOX_TOPICS = (ENQUEUE_TOPIC, *WEBHOOK_EVENTS)

# The lease (distributed_locks.name) of the beat process that sends ticks (aos.tasks.scheduler.LeaderScheduler):
# here, not with the leases' code (aos.services.locks), so that `aos doctor` names it without importing a session.
BEAT_LEASE = "aos.beat"

RECOVERY_LAYERS = ("cache", "vector", "llm", "catalog")
# abandoned: applied, then the run was cancelled before the step could answer; counts neither for nor against its pattern
SUGGESTION_STATUSES = ("offered", "applied", "succeeded", "failed", "abandoned")
