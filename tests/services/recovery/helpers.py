"""Failed runs written straight to Postgres (the engine's way of failing them is tested end to end elsewhere)."""

from __future__ import annotations

import json
import secrets
import string
import uuid

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
