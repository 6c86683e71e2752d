"""Failed runs written straight to Postgres (the engine's way of failing them is tested end to end elsewhere)."""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid

from sqlalchemy import text

from aos.db.models import Checkpoint, Run
from aos.db.session import session_scope


def word() -> str:
    """A word of letters only: survives normalisation, so each test's failures are its own."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))


def failed_run(ctx, code: str, message: str, *, skill: str = "http.request", args=None,
               timeout_s: float | None = None) -> uuid.UUID:
    step = {"id": "fetch", "skill": skill, "args": args or {"method": "GET", "url": "https://example.com/"}}
    if timeout_s:
        step["timeout_s"] = timeout_s
    plan = {"steps": [step]}
    rid = uuid.uuid4()
    with session_scope() as s:
        s.add(Run(id=rid, tenant_id=ctx.tenant_id, plan=plan, plan_hash="x" * 64, skill_versions={"fetch": skill},
                  inputs={}, step_count=1, status="failed", next_step=0, attempt=1, error_code=code,
                  error_message=message))
        s.flush()
        s.add(Checkpoint(tenant_id=ctx.tenant_id, run_id=rid, step_index=0, step_id="fetch", attempt=1,
                         status="failed", skill=skill, args=json.loads(json.dumps(step["args"])), error_code=code))
    return rid


def wait_for_suggestion(ctx, run_id, timeout: float = 30.0, status: str | None = None) -> dict:
    """The run's newest suggestion once the worker's suggest task stored it (with ``status``, once it has it)."""
    from aos.services import recovery

    deadline = time.monotonic() + timeout
    while not ((got := recovery.list_for_run(ctx, run_id)) and status in (None, got[0]["status"])):
        assert time.monotonic() < deadline, f"no suggestion{' ' + status if status else ''} for run {run_id}"
        time.sleep(0.2)
    return got[0]


def set_suggestion(suggestion_id: str, mode: str, parameters: dict) -> None:
    """What a model writer may answer (the offline writer only ever suggests timing): stored as the suggestion."""
    with session_scope() as s:
        s.execute(text("UPDATE recovery_suggestions SET mode = :m, parameters = CAST(:p AS jsonb) WHERE id = :i"),
                  {"m": mode, "p": json.dumps(parameters), "i": suggestion_id})


def drain_until_final(run_id, publisher, timeout: float = 30) -> str:
    """Drain the outbox, as beat does every AOS_OUTBOX_INTERVAL_S, until the run is final; its status. A run
    resumed with a delay (a suggestion's ``delay_s``) is published by the drain once the delay has passed."""
    from aos.services.outbox import drain_outbox

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as s:
            status = s.execute(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
        if status in ("succeeded", "failed", "cancelled", "dead_lettered"):
            return status
        assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout}s"
        drain_outbox(publisher)
        time.sleep(0.1)
