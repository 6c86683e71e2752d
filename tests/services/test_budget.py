"""Budget rows: the tenant's day is enforced and every spend lands in it (the step path's statements)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

from aos.db import direct, step_store
from aos.db.models import Checkpoint, Run, Tenant, TenantDailySpend
from aos.db.session import session_scope
from aos.runtime import budget
from aos.services.runs import submit_run

PLAN = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}


def _claim(run_id) -> dict | None:  # noqa: ANN001
    with direct.relaxed() as conn:
        return step_store.claim(conn, step_store.ClaimRequest(
            run_id=run_id, index=0, step_id="a", skill="json.transform@1", worker="test:1/a", takeover=(),
            lease_s=30, cost_usd=Decimal(0), tokens=0))


def _settle(settlement: step_store.Settlement) -> bool:
    with direct.durable() as conn:
        return step_store.settle(conn, settlement)


def _opened(claimed: dict) -> step_store.OpenAttempt:
    return step_store.OpenAttempt(index=0, step_id="a", skill="json.transform@1", attempt=claimed["attempt"])


def test_tenant_daily_budget_refuses_the_reservation_that_would_exceed_it(tenant):
    ctx, _ = tenant
    with session_scope() as s:
        s.execute(update(Tenant).where(Tenant.id == ctx.tenant_id).values(daily_budget_usd=Decimal("0.05")))
    day = budget.today()
    with direct.durable() as conn:
        results = [step_store.reserve_tenant_day(conn, ctx.tenant_id, day, Decimal("0.02")) for _ in range(3)]
    assert results == [True, True, False]
    with session_scope() as s:
        row = s.scalar(select(TenantDailySpend).where(TenantDailySpend.tenant_id == ctx.tenant_id))
    assert row.reserved_cost_usd == Decimal("0.04")


def test_a_tenant_without_a_daily_budget_reserves_without_limit(tenant):
    ctx, _ = tenant
    day = budget.today()
    with direct.durable() as conn:
        assert all(step_store.reserve_tenant_day(conn, ctx.tenant_id, day, Decimal("1000")) for _ in range(3))


def test_spend_is_recorded_on_the_tenants_day_even_when_nothing_was_reserved(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    claimed = _claim(run_id)
    assert claimed is not None
    with session_scope() as s:  # a zero estimate wrote no row on the tenant's day
        assert s.scalar(select(TenantDailySpend).where(TenantDailySpend.tenant_id == ctx.tenant_id)) is None
    assert _settle(step_store.Settlement(
        run_id=run_id, version=claimed["version"], lease_owner="test:1/a", status="running", next_step=1,
        attempt=_opened(claimed), checkpoint_status="succeeded", outcome='{"status": "ok"}',
        cost_usd=Decimal("0.0125"), input_tokens=10, output_tokens=5, day=budget.today()))
    with session_scope() as s:
        day = s.scalar(select(TenantDailySpend).where(TenantDailySpend.tenant_id == ctx.tenant_id))
        run = s.get(Run, run_id)
    assert day.spent_cost_usd == Decimal("0.0125") and day.spent_tokens == 15
    assert run.spent_cost_usd == Decimal("0.0125") and run.spent_tokens == 15


def test_a_settlement_whose_fence_moved_writes_nothing(tenant):
    """A delivery whose lease was taken over (the version moved on) settles nothing at all."""
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    claimed = _claim(run_id)
    assert claimed is not None
    stale = step_store.Settlement(
        run_id=run_id, version=claimed["version"] - 1, lease_owner="test:1/a", status="succeeded", next_step=1,
        final=True, attempt=_opened(claimed), checkpoint_status="succeeded", outcome="{}",
        cost_usd=Decimal("1"), day=budget.today(), events='[{"type": "run.succeeded", "data": {}}]',
        outbox='[{"topic": "run.succeeded", "payload": {}}]')
    assert not _settle(stale)
    with session_scope() as s:
        run = s.get(Run, run_id)
        assert (run.status, run.next_step, run.spent_cost_usd, run.attempt_open) == ("running", 0, Decimal(0), True)
        assert s.scalar(select(Checkpoint).where(Checkpoint.run_id == run_id)) is None
        assert s.scalar(select(TenantDailySpend).where(TenantDailySpend.tenant_id == ctx.tenant_id)) is None
