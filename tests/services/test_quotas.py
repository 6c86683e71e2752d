"""Quotas as a service: the tenant's daily budget warns once at 80 % (a run event and a webhook), and the
quotas view reports the day's spend. Steps run in this process through the real engine (execute_step) against
the session's Postgres."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from aos.db.models import OutboxMessage, Tenant
from aos.db.session import session_scope
from aos.services import quotas
from aos.services.execution import execute_step
from aos.services.runs import get_timeline, submit_run
from tests.support.llm_server import FakeLlmServer

# a local OpenAI-compatible server answers every call with the same usage (20 + 9 tokens); a price high
# enough makes each call cost a round $0.29
MODEL = "gpt-4o-mini-2024-07-18"
PRICING = json.dumps({MODEL: {"input_per_mtok": 10000.0, "output_per_mtok": 10000.0}})
STEP = {"skill": "llm.complete", "args": {"provider": "openai", "model": MODEL, "prompt": "hi", "max_tokens": 8}}


@pytest.fixture
def priced_llm(settings_env):
    with FakeLlmServer() as srv:
        settings_env(AOS_LLM_PRICING=PRICING, AOS_OPENAI_BASE_URL=srv.openai_url, AOS_OPENAI_API_KEY="sk-test")
        yield srv


def _tenant_warnings(ctx, run_id) -> list[dict]:  # noqa: ANN001
    return [e for e in get_timeline(ctx, run_id) if e["type"] == "budget.warning"
            and e["data"].get("scope") == "tenant_daily"]


def test_the_tenants_daily_budget_warns_once_when_spend_reaches_80_percent(tenant, priced_llm):
    ctx, _ = tenant
    first = submit_run(ctx, {"steps": [{"id": "s0", **STEP}]}, None)
    execute_step(str(first), 0, "test:1/q")
    one_call = quotas.quotas_view(ctx.tenant_id, requests_today=None, defaults={
        "key_requests_per_minute": 1, "tenant_requests_per_minute": 1})["usage"]["cost_usd"]
    assert one_call == pytest.approx(0.29)
    with session_scope() as s:  # four calls' worth: 25 %, 50 %, 75 % … 100 %
        s.execute(update(Tenant).where(Tenant.id == ctx.tenant_id)
                  .values(daily_budget_usd=Decimal(str(round(one_call * 4, 6)))))
    run_id = submit_run(ctx, {"steps": [{"id": f"s{i}", **STEP} for i in range(3)]}, None)
    execute_step(str(run_id), 0, "test:1/q")  # 2 calls today: 50 %
    assert _tenant_warnings(ctx, run_id) == []
    execute_step(str(run_id), 1, "test:1/q")  # 75 %
    assert _tenant_warnings(ctx, run_id) == []
    execute_step(str(run_id), 2, "test:1/q")  # 100 %: past 80 %, warned
    warned = _tenant_warnings(ctx, run_id)
    assert len(warned) == 1 and warned[0]["data"]["ratios"]["cost"] >= 0.8
    assert not quotas.warn_daily_budget(ctx.tenant_id, run_id, date.fromisoformat(warned[0]["data"]["day"]))
    with session_scope() as s:  # and a webhook row announces it, once
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.tenant_id == ctx.tenant_id, OutboxMessage.topic == "budget.warning",
            OutboxMessage.payload["data"]["scope"].astext == "tenant_daily")) == 1
    view = quotas.quotas_view(ctx.tenant_id, requests_today=None,
                              defaults={"key_requests_per_minute": 1, "tenant_requests_per_minute": 1})
    assert view["budget_warned_at"] is not None and view["usage"]["cost_usd"] == pytest.approx(one_call * 4)
    assert view["usage"]["tokens"] == 4 * 29


def test_a_tenant_without_a_daily_budget_is_never_warned(tenant, priced_llm):
    ctx, _ = tenant
    run_id = submit_run(ctx, {"steps": [{"id": "s0", **STEP}]}, None)
    execute_step(str(run_id), 0, "test:1/q")
    assert _tenant_warnings(ctx, run_id) == []
