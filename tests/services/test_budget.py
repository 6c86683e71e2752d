"""Budget rows: the tenant's day is enforced and every spend lands in it."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

from aos.db.models import Run, Tenant, TenantDailySpend
from aos.db.session import session_scope
from aos.runtime import budget
from aos.runtime.outcome import Usage
from aos.services.runs import submit_run
from aos.skills.base import Estimate

PLAN = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}


def test_tenant_daily_budget_refuses_the_reservation_that_would_exceed_it(tenant):
    ctx, _ = tenant
    with session_scope() as s:
        s.execute(update(Tenant).where(Tenant.id == ctx.tenant_id).values(daily_budget_usd=Decimal("0.05")))
    r = budget.reservation_for(Estimate(cost_usd=0.02))
    results = []
    for _ in range(3):
        with session_scope() as s:
            results.append(budget.reserve_tenant_day(s, ctx.tenant_id, r))
    assert results == [True, True, False]


def test_spend_is_recorded_on_the_tenants_day_even_when_nothing_was_reserved(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    zero = budget.reservation_for(Estimate(cost_usd=0.0))
    with session_scope() as s:
        assert budget.reserve_tenant_day(s, ctx.tenant_id, zero)  # a zero estimate writes no row
        run = s.get(Run, run_id, with_for_update=True)
        budget.settle(s, run, zero, Usage(cost_usd=0.0125, input_tokens=10, output_tokens=5))
    with session_scope() as s:
        day = s.scalar(select(TenantDailySpend).where(TenantDailySpend.tenant_id == ctx.tenant_id))
        run = s.get(Run, run_id)
    assert day.spent_cost_usd == Decimal("0.0125") and day.spent_tokens == 15
    assert run.spent_cost_usd == Decimal("0.0125") and run.spent_tokens == 15
