"""The pre-execution cost simulator: what a plan would cost, use and take, before anything runs.

Per step, the estimate starts from the skill's own ``CostModel`` and is replaced by
history when there is any: the mean of the tenant's recent successful attempts of
the same skill version (and, for ``llm.complete``, the same model). Then the plan is
judged against its budget, the tenant's daily budget and the agent's capabilities,
with the same capability check submission uses. Nothing runs and nothing is
written: the whole simulation reads in one READ ONLY transaction.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.orm import Session

from aos.config import Settings, get_settings
from aos.db.models import Checkpoint, Tenant, TenantDailySpend
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import Plan, Step, parse_plan
from aos.plan.refs import has_references, resolve
from aos.runtime.budget import WARN_RATIO
from aos.services.capabilities import capability_problems, load_agent
from aos.services.tenancy import TenantContext
from aos.skills.base import Skill
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)

HISTORY_WINDOW = 200  # the most recent finished attempts that refine an estimate
LLM_SKILL = "llm.complete"


def simulate_plan(ctx: TenantContext, plan_data: Any, inputs: dict[str, Any] | None = None,
                  agent_id: uuid.UUID | str | None = None) -> dict[str, Any]:
    """Estimate ``plan_data`` step by step and in total, with budget and capability verdicts.

    An invalid plan raises the same AosError (every problem with its path) as submitting it.
    """
    if inputs is not None and not isinstance(inputs, dict):
        raise AosError("VALIDATION_ERROR", "inputs must be a JSON object")
    registry = default_registry()
    plan = parse_plan(plan_data, registry, inputs=inputs)
    settings = get_settings()
    with session_scope() as s:
        # the promise "nothing is written", kept by Postgres rather than by care
        s.execute(text("SET TRANSACTION READ ONLY"))
        capabilities = {"verdict": "not_checked", "problems": []}
        if agent_id is not None:
            problems = capability_problems(load_agent(s, ctx, agent_id), plan)
            capabilities = {"verdict": "denied" if problems else "allowed", "problems": problems}
        history: dict[tuple[str, str | None], tuple] = {}  # one query per (skill, model), not per step
        steps = [_estimate_step(s, ctx, plan, st, registry.resolve(st.skill), settings, history)
                 for st in plan.steps]
        daily_remaining = _daily_remaining(s, ctx)
    total = {
        "estimated_cost_usd": _money(sum(st["estimated_cost_usd"] for st in steps)),
        "estimated_tokens": sum(st["estimated_tokens"] for st in steps),
        "estimated_latency_ms": round(sum(st["estimated_latency_ms"] for st in steps), 3),
    }
    budget, warnings = _budget_verdict(plan, total, daily_remaining)
    return {"plan_hash": plan.hash, "steps": steps, "total": total, "budget": budget,
            "capabilities": capabilities, "warnings": warnings}


def _money(x: float) -> float:
    return round(float(x), 8)


def _estimate_step(s: Session, ctx: TenantContext, plan: Plan, st: Step, skill: Skill,
                   settings: Settings, history: dict[tuple[str, str | None], tuple]) -> dict[str, Any]:
    warnings: list[str] = []
    try:  # inputs are known now; earlier steps' outputs are not (they read as empty)
        args = resolve(st.args, {"inputs": plan.inputs, "steps": {}})
    except Exception:  # noqa: BLE001 — an estimate never fails a simulation; the raw args will do
        args = st.args
    if not isinstance(args, dict):
        args = st.args
    model = None
    if skill.name == LLM_SKILL:
        model, note = _llm_model(args, settings)
        if note:
            warnings.append(note)
        if has_references({k: v for k, v in st.args.items() if k in ("prompt", "system", "messages")}):
            warnings.append("the prompt uses earlier steps' outputs, unknown before the run: the cost-model "
                            "estimate counts only its literal text")
    if skill.cost_model is Skill.cost_model:
        warnings.append(f"{skill.ref} declares no cost model: it is estimated at 0 until it has history")
    estimate = skill.cost_model.estimate(args)
    if (skill.ref, model) not in history:
        history[(skill.ref, model)] = _history(s, ctx, skill.ref, model)
    n, cost, tokens, latency, failure_rate = history[(skill.ref, model)]
    item: dict[str, Any] = {
        "id": st.id, "skill": skill.ref, "model": model,
        "estimated_cost_usd": _money(estimate.cost_usd), "estimated_tokens": int(estimate.tokens),
        "estimated_latency_ms": round(float(estimate.latency_ms), 3), "basis": "cost_model", "samples": 0,
        "failure_rate": failure_rate, "warnings": warnings,
    }
    if n:
        item.update(estimated_cost_usd=_money(cost or 0), estimated_tokens=int(round(tokens or 0)),
                    basis="history", samples=n)
        if latency is not None:
            item["estimated_latency_ms"] = round(float(latency), 3)
    return item


def _llm_model(args: dict[str, Any], settings: Settings) -> tuple[str, str | None]:
    """The model an llm.complete step would call, and a warning when the pricing table lacks it."""
    from aos.skills.llm import PROVIDERS, pricing, resolve_model

    provider = args.get("provider") or settings.llm_default_provider
    if provider not in PROVIDERS:
        return str(args.get("model") or provider), f"provider {provider!r} is not one of {', '.join(PROVIDERS)}"
    model = resolve_model(args, provider, settings)
    if provider == "offline":
        return model, None
    try:
        price = pricing.lookup(model, pricing.price_table(settings.llm_pricing))
    except pricing.PricingError as exc:
        return model, f"the pricing table is invalid ({exc}): the cost is estimated at 0"
    if price is None:
        return model, (f"model {model!r} is not in the pricing table: its cost is estimated (and will be "
                       "recorded) as 0; add it with AOS_LLM_PRICING")
    return model, None


def _history(s: Session, ctx: TenantContext, skill_ref: str,
             model: str | None) -> tuple[int, float | None, float | None, float | None, float | None]:
    """(successes, mean cost, mean tokens, mean latency ms, failure rate) over the recent finished attempts."""
    recent: Select = (select(Checkpoint.status, Checkpoint.cost_usd,
                             (Checkpoint.input_tokens + Checkpoint.output_tokens).label("tokens"),
                             Checkpoint.duration_ms)
                      .where(Checkpoint.tenant_id == ctx.tenant_id, Checkpoint.skill == skill_ref,
                             Checkpoint.status.in_(("succeeded", "failed")), Checkpoint.finished_at.is_not(None)))
    if model is not None:
        recent = recent.where(or_(Checkpoint.args["model"].astext == model,
                                  Checkpoint.outcome["output"]["model"].astext == model))
    sub = recent.order_by(Checkpoint.finished_at.desc()).limit(HISTORY_WINDOW).subquery()
    ok = sub.c.status == "succeeded"
    row = s.execute(select(func.count().filter(ok), func.count(), func.avg(sub.c.cost_usd).filter(ok),
                           func.avg(sub.c.tokens).filter(ok),
                           func.avg(sub.c.duration_ms).filter(and_(ok, sub.c.duration_ms.is_not(None))))).one()
    successes, finished, cost, tokens, latency = row
    failure_rate = round((finished - successes) / finished, 4) if finished else None
    return (successes, float(cost) if cost is not None else None, float(tokens) if tokens is not None else None,
            float(latency) if latency is not None else None, failure_rate)


def _daily_remaining(s: Session, ctx: TenantContext) -> float | None:
    """What is left of the tenant's daily budget today (None: the tenant has no daily budget)."""
    limit = s.scalar(select(Tenant.daily_budget_usd).where(Tenant.id == ctx.tenant_id))
    if limit is None:
        return None
    row = s.execute(select(TenantDailySpend.spent_cost_usd, TenantDailySpend.reserved_cost_usd)
                    .where(TenantDailySpend.tenant_id == ctx.tenant_id,
                           TenantDailySpend.day == datetime.now(UTC).date())).first()
    used = (row[0] + row[1]) if row else 0
    return _money(max(float(limit) - float(used), 0.0))


def _budget_verdict(plan: Plan, total: dict[str, Any],
                    daily_remaining: float | None) -> tuple[dict[str, Any], list[str]]:
    b = plan.budget
    problems: list[dict[str, str]] = []
    warnings: list[str] = []
    checks = [
        ("$.budget.max_cost_usd", "cost", total["estimated_cost_usd"], b.max_cost_usd, "USD"),
        ("$.budget.max_tokens", "tokens", total["estimated_tokens"], b.max_tokens, "tokens"),
        ("$.budget.max_steps", "steps", len(plan.steps), b.max_steps, "steps"),
        ("tenant.daily_budget_usd", "cost", total["estimated_cost_usd"], daily_remaining, "USD left today"),
    ]
    for path, what, estimate, limit, unit in checks:
        if limit is None:
            continue
        if estimate > limit:
            problems.append({"path": path, "code": "BUDGET_EXCEEDED",
                             "message": f"estimated {what} {estimate} exceeds the limit of {limit} {unit}"})
        elif estimate > WARN_RATIO * limit and what != "steps":
            warnings.append(f"estimated {what} {estimate} is above {int(WARN_RATIO * 100)}% of the limit of "
                            f"{limit} {unit} ({path})")
    limited = any(v is not None for v in (b.max_cost_usd, b.max_tokens, b.max_steps, daily_remaining))
    verdict = "exceeds" if problems else ("within" if limited else "unlimited")
    budget = {"verdict": verdict, "max_cost_usd": b.max_cost_usd, "max_tokens": b.max_tokens,
              "max_steps": b.max_steps, "daily_remaining_usd": daily_remaining, "problems": problems}
    return budget, warnings
