"""Budgets are rows: reserved with one conditional ``UPDATE … WHERE spent + reserved + x <= limit``
before a step and settled after, so any number of workers share one budget (the seeds' P1-2,
"budget dict per instance", must be impossible here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from aos.db.models import Run
from aos.runtime.outcome import Usage
from aos.skills.base import Estimate

WARN_RATIO = 0.8


@dataclass(frozen=True)
class Reservation:
    cost_usd: Decimal
    tokens: int
    day: date


def _today() -> date:
    return datetime.now(UTC).date()


def reservation_for(estimate: Estimate) -> Reservation:
    return Reservation(Decimal(str(round(estimate.cost_usd, 6))), int(estimate.tokens), _today())


def run_is_limited(run: Run) -> bool:
    return run.max_cost_usd is not None or run.max_tokens is not None or run.max_steps is not None


def reserve_run(s: Session, run_id: uuid.UUID, estimate: Estimate) -> Reservation | None:
    """Reserve one step's estimate on the run; None when it would exceed a limit.

    ``steps_started`` already counts this step (the claim increments it), hence ``<=``."""
    r = reservation_for(estimate)
    row = s.execute(text("""
        UPDATE runs SET reserved_cost_usd = reserved_cost_usd + :cost,
                        reserved_tokens = reserved_tokens + :tokens
        WHERE id = :id
          AND (max_cost_usd IS NULL OR spent_cost_usd + reserved_cost_usd + :cost <= max_cost_usd)
          AND (max_tokens IS NULL OR spent_tokens + reserved_tokens + :tokens <= max_tokens)
          AND (max_steps IS NULL OR steps_started <= max_steps)
        RETURNING id"""), {"id": run_id, "cost": r.cost_usd, "tokens": r.tokens}).first()
    return r if row is not None else None


def reserve_tenant_day(s: Session, tenant_id: uuid.UUID, r: Reservation) -> bool:
    """Reserve on the tenant's budget for the day (unlimited when the tenant has none).

    A zero estimate cannot exceed anything: skip the row, which every step of a tenant would lock."""
    if r.cost_usd == 0:
        return True
    s.execute(text("""INSERT INTO tenant_daily_spend (tenant_id, day) VALUES (:t, :d)
                      ON CONFLICT DO NOTHING"""), {"t": tenant_id, "d": r.day})
    row = s.execute(text("""
        UPDATE tenant_daily_spend d SET reserved_cost_usd = d.reserved_cost_usd + :cost
        FROM tenants t
        WHERE d.tenant_id = :t AND d.day = :d AND t.id = d.tenant_id
          AND (t.daily_budget_usd IS NULL OR d.spent_cost_usd + d.reserved_cost_usd + :cost <= t.daily_budget_usd)
        RETURNING d.tenant_id"""), {"t": tenant_id, "d": r.day, "cost": r.cost_usd}).first()
    return row is not None


def release_run(s: Session, run_id: uuid.UUID, r: Reservation) -> None:
    s.execute(text("""UPDATE runs SET reserved_cost_usd = GREATEST(reserved_cost_usd - :cost, 0),
                      reserved_tokens = GREATEST(reserved_tokens - :tokens, 0) WHERE id = :id"""),
              {"id": run_id, "cost": r.cost_usd, "tokens": r.tokens})


def settle(s: Session, run: Run, r: Reservation, usage: Usage) -> None:
    """Replace the reservation by what the step really spent (run row locked by the caller)."""
    cost = Decimal(str(round(usage.cost_usd, 6)))
    run.reserved_cost_usd = max(Decimal(0), run.reserved_cost_usd - r.cost_usd)
    run.reserved_tokens = max(0, run.reserved_tokens - r.tokens)
    run.spent_cost_usd = run.spent_cost_usd + cost
    run.spent_tokens = run.spent_tokens + usage.tokens
    if r.cost_usd == 0 and cost == 0 and usage.tokens == 0:
        return  # nothing reserved on, nothing spent from, the tenant's day
    # an upsert: a zero estimate reserved nothing, so the day's row may not exist yet
    s.execute(text("""INSERT INTO tenant_daily_spend (tenant_id, day, spent_cost_usd, spent_tokens)
                      VALUES (:t, :d, :cost, :tok)
                      ON CONFLICT (tenant_id, day) DO UPDATE SET
                        reserved_cost_usd = GREATEST(tenant_daily_spend.reserved_cost_usd - :res, 0),
                        spent_cost_usd = tenant_daily_spend.spent_cost_usd + :cost,
                        spent_tokens = tenant_daily_spend.spent_tokens + :tok"""),
              {"t": run.tenant_id, "d": r.day, "res": r.cost_usd, "cost": cost, "tok": usage.tokens})


def usage_ratios(run: Run) -> dict[str, float]:
    ratios: dict[str, float] = {}
    if run.max_cost_usd:
        ratios["cost"] = float(run.spent_cost_usd) / float(run.max_cost_usd)
    if run.max_tokens:
        ratios["tokens"] = run.spent_tokens / run.max_tokens
    if run.max_steps:
        ratios["steps"] = run.steps_started / run.max_steps
    return ratios


def warn_if_near(s: Session, run: Run) -> None:
    """Record one budget.warning (timeline + webhook outbox) the first time a limit passes 80%."""
    from aos.services import timeline

    if run.budget_warned:
        return
    near = {k: round(v, 3) for k, v in usage_ratios(run).items() if v >= WARN_RATIO}
    if near:
        run.budget_warned = True
        timeline.record(s, run.tenant_id, run.id, "budget.warning", ratios=near,
                        spent_cost_usd=float(run.spent_cost_usd), spent_tokens=run.spent_tokens,
                        steps_started=run.steps_started)


def explain(s: Session, run_id: uuid.UUID, estimate: Estimate) -> str:
    run = s.get(Run, run_id)
    assert run is not None
    s.refresh(run)
    parts = []
    if run.max_steps is not None and run.steps_started > run.max_steps:
        parts.append(f"max_steps {run.max_steps} reached")
    if run.max_cost_usd is not None and float(run.spent_cost_usd + run.reserved_cost_usd) + estimate.cost_usd > float(
            run.max_cost_usd):
        parts.append(f"cost: spent {float(run.spent_cost_usd):.6f} + estimate {estimate.cost_usd:.6f} "
                     f"> max_cost_usd {float(run.max_cost_usd)}")
    if run.max_tokens is not None and run.spent_tokens + run.reserved_tokens + estimate.tokens > run.max_tokens:
        parts.append(f"tokens: spent {run.spent_tokens} + estimate {estimate.tokens} > max_tokens {run.max_tokens}")
    return "the step would exceed the run's budget (" + "; ".join(parts or ["limit reached"]) + ")"
