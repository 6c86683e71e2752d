"""The cost simulator: cost models, history of real past attempts, budget and capability verdicts; writes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from aos.db.models import Checkpoint, OutboxMessage, Run, RunEvent, TenantDailySpend
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.agents import create_agent
from aos.services.runs import submit_run
from aos.services.simulate import simulate_plan
from aos.skills.base import Skill, SkillResult
from aos.skills.registry import default_registry
from aos.tasks.publisher import CeleryPublisher
from tests.support.llm_server import FakeLlmServer, openai_completion, openai_error
from tests.support.worker import wait_for_run
from tests.web.api_helpers import new_tenant

PROMPT = "Summarise the quarterly numbers in one sentence."  # 48 characters -> 13 input tokens


def llm_step(step_id: str = "say", **args) -> dict:
    merged = {"provider": "anthropic", "model": "claude-sonnet-4-5", "prompt": PROMPT, "max_tokens": 100, **args}
    return {"id": step_id, "skill": "llm.complete", "args": {k: v for k, v in merged.items() if v is not None}}


def transform_step(step_id: str = "pick") -> dict:
    return {"id": step_id, "skill": "json.transform", "args": {"input": {"a": 1}, "expr": "a"}}


def _row_counts(tenant_id: uuid.UUID) -> tuple[int, ...]:
    """The tenant's rows in each table a run writes (only its own: runs of earlier tests may still be going)."""
    with session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(m).where(m.tenant_id == tenant_id))
                     for m in (Run, Checkpoint, RunEvent, OutboxMessage, TenantDailySpend))


def test_without_history_the_cost_models_estimate_each_step_and_nothing_is_written(aos_env):
    ctx, _ = new_tenant()
    before = _row_counts(ctx.tenant_id)
    sim = simulate_plan(ctx, {"steps": [transform_step(), llm_step()]})
    assert _row_counts(ctx.tenant_id) == before
    pick, say = sim["steps"]
    assert (pick["skill"], pick["basis"], pick["samples"], pick["estimated_cost_usd"]) == (
        "json.transform@1", "cost_model", 0, 0.0)
    assert pick["estimated_latency_ms"] == 0.2 and pick["failure_rate"] is None and pick["model"] is None
    input_tokens = len(PROMPT) // 4 + 1
    assert say["model"] == "claude-sonnet-4-5" and say["basis"] == "cost_model"
    assert say["estimated_tokens"] == input_tokens + 100
    assert say["estimated_cost_usd"] == pytest.approx((input_tokens * 3.0 + 100 * 15.0) / 1e6)
    assert sim["total"] == {"estimated_cost_usd": pytest.approx(say["estimated_cost_usd"]),
                            "estimated_tokens": input_tokens + 100,
                            "estimated_latency_ms": pytest.approx(0.2 + 2000.0)}
    assert sim["budget"]["verdict"] == "unlimited" and sim["capabilities"] == {"verdict": "not_checked",
                                                                              "problems": []}
    assert len(sim["plan_hash"]) == 64 and sim["warnings"] == []


def test_inputs_given_to_the_simulation_are_part_of_the_estimate(aos_env):
    ctx, _ = new_tenant()
    plan = {"inputs": {"text": "short"}, "steps": [llm_step(prompt="Translate: ${inputs.text}")]}
    short = simulate_plan(ctx, plan)["steps"][0]["estimated_tokens"]
    long = simulate_plan(ctx, plan, inputs={"text": "x" * 4000})["steps"][0]["estimated_tokens"]
    assert long - short == pytest.approx(1000, abs=2)


def test_budget_verdicts_problems_and_the_80_percent_warning(aos_env):
    ctx, _ = new_tenant()
    one_call = simulate_plan(ctx, {"steps": [llm_step()]})["total"]["estimated_cost_usd"]
    over = simulate_plan(ctx, {"budget": {"max_cost_usd": one_call / 2, "max_tokens": 50, "max_steps": 1},
                               "steps": [llm_step(), transform_step()]})
    assert over["budget"]["verdict"] == "exceeds"
    assert {p["path"] for p in over["budget"]["problems"]} == {
        "$.budget.max_cost_usd", "$.budget.max_tokens", "$.budget.max_steps"}
    assert all(p["code"] == "BUDGET_EXCEEDED" for p in over["budget"]["problems"])
    near = simulate_plan(ctx, {"budget": {"max_cost_usd": one_call / 0.9}, "steps": [llm_step()]})
    assert near["budget"]["verdict"] == "within" and near["budget"]["problems"] == []
    assert any("80%" in w and "max_cost_usd" in w for w in near["warnings"])
    roomy = simulate_plan(ctx, {"budget": {"max_cost_usd": 10.0}, "steps": [llm_step()]})
    assert roomy["budget"]["verdict"] == "within" and roomy["warnings"] == []


def test_the_tenants_daily_budget_left_today_is_part_of_the_verdict(aos_env):
    ctx, _ = new_tenant(daily_budget_usd=Decimal("0.002"))
    with session_scope() as s:
        s.add(TenantDailySpend(tenant_id=ctx.tenant_id, day=datetime.now(UTC).date(),
                               spent_cost_usd=Decimal("0.0010"), reserved_cost_usd=Decimal("0.0005")))
    sim = simulate_plan(ctx, {"steps": [llm_step()]})  # ~0.0015 USD against 0.0005 left
    assert sim["budget"]["daily_remaining_usd"] == pytest.approx(0.0005)
    assert sim["budget"]["verdict"] == "exceeds"
    assert [p["path"] for p in sim["budget"]["problems"]] == ["tenant.daily_budget_usd"]


def test_capability_verdict_is_the_submission_check(aos_env):
    ctx, _ = new_tenant()
    agent = create_agent(ctx, "narrow", {"allowed_skills": ["json.transform"], "http_hosts": ["api.example.com"],
                                         "max_cost_usd": 0.1})
    plan = {"budget": {"max_cost_usd": 0.05}, "steps": [
        transform_step(), {"id": "get", "skill": "http.request", "args": {"url": "https://other.example.net/"}}]}
    sim = simulate_plan(ctx, plan, agent_id=agent["id"])
    with pytest.raises(AosError) as submitted:
        submit_run(ctx, plan, None, agent_id=uuid.UUID(agent["id"]))
    assert sim["capabilities"]["verdict"] == "denied"
    assert sim["capabilities"]["problems"] == submitted.value.problems
    assert {p["path"] for p in sim["capabilities"]["problems"]} == {"$.steps[1].skill", "$.steps[1].args.url"}
    allowed = simulate_plan(ctx, {"budget": {"max_cost_usd": 0.05}, "steps": [transform_step()]},
                            agent_id=uuid.UUID(agent["id"]))
    assert allowed["capabilities"] == {"verdict": "allowed", "problems": []}
    _, other_key = new_tenant()
    with pytest.raises(AosError) as e:
        simulate_plan(ctx, plan, agent_id=uuid.uuid4())
    assert e.value.code == "NOT_FOUND"


def test_an_invalid_plan_fails_as_it_would_at_submission(aos_env):
    ctx, _ = new_tenant()
    bad = {"steps": [{"id": "a", "skill": "nope"}, {"id": "a", "skill": "json.transform", "args": {"expr": "[["}}]}
    with pytest.raises(AosError) as simulated:
        simulate_plan(ctx, bad)
    with pytest.raises(AosError) as submitted:
        submit_run(ctx, bad, None)
    assert simulated.value.code == submitted.value.code and simulated.value.problems == submitted.value.problems


def test_warnings_for_an_unpriced_model_and_a_prompt_built_from_earlier_outputs(aos_env):
    ctx, _ = new_tenant()
    sim = simulate_plan(ctx, {"steps": [
        transform_step(),
        llm_step("unpriced", model="claude-imaginary-9"),
        llm_step("chained", prompt="Explain ${steps.pick.output}"),
        llm_step("offline", provider="offline", model=None),
    ]})
    _, unpriced, chained, offline = sim["steps"]
    assert any("claude-imaginary-9" in w and "pricing table" in w for w in unpriced["warnings"])
    assert unpriced["estimated_cost_usd"] == 0.0
    assert any("earlier steps' outputs" in w for w in chained["warnings"])
    assert offline["warnings"] == [] and offline["estimated_cost_usd"] == 0.0


class _Uncosted(Skill):
    name = "test.uncosted"
    description = "a skill that declares no cost model"

    def run(self, args, ctx):  # noqa: ANN001, ANN201
        return SkillResult(output=None)


@pytest.fixture
def uncosted_skill():
    registry = default_registry()
    registry.register(_Uncosted())
    yield
    registry._skills.pop(_Uncosted.name)  # the registry has no unregister: tests only


def test_a_skill_without_cost_model_is_flagged(aos_env, uncosted_skill):
    ctx, _ = new_tenant()
    [step] = simulate_plan(ctx, {"steps": [{"id": "u", "skill": "test.uncosted", "args": {}}]})["steps"]
    assert step["estimated_cost_usd"] == 0.0 and any("no cost model" in w for w in step["warnings"])


def test_history_of_real_attempts_replaces_the_cost_model_per_skill_and_model(worker):
    ctx, _ = new_tenant()
    other_ctx, _ = new_tenant()
    with FakeLlmServer() as srv:
        def step(model: str = "gpt-4o-mini", step_id: str = "say") -> dict:
            return llm_step(step_id, provider="openai_compatible", base_url=srv.openai_url, model=model)

        srv.push(openai_completion(prompt_tokens=100, completion_tokens=50),
                 openai_completion(prompt_tokens=300, completion_tokens=150),
                 openai_error(400, "bad request", "invalid_request_error"),
                 openai_completion(model="gpt-4o", prompt_tokens=5000, completion_tokens=5000),
                 openai_completion(prompt_tokens=9000, completion_tokens=9000))
        runs = []
        # One run at a time, each waited for before the next is submitted: the fake answers in order,
        # and a worker with two processes would otherwise hand the 400 to whichever run came first.
        for run_ctx, plan_step in [(ctx, step()), (ctx, step()), (ctx, step()),
                                   (ctx, step("gpt-4o")),  # another model
                                   (other_ctx, step())]:  # another tenant
            runs.append(submit_run(run_ctx, {"steps": [plan_step]}, CeleryPublisher()))
            wait_for_run(runs[-1], timeout=60)
        with session_scope() as s:
            done = s.execute(select(Checkpoint.status, Checkpoint.cost_usd, Checkpoint.duration_ms)
                             .where(Checkpoint.run_id.in_(runs[:3]))).all()
        assert sorted(d.status for d in done) == ["failed", "succeeded", "succeeded"]
        ok = [d for d in done if d.status == "succeeded"]

        sim = simulate_plan(ctx, {"steps": [step(), step("gpt-4o", "b"), step("gpt-4.1-nano", "c")]})
    mini, gpt4o, fresh = sim["steps"]
    assert (mini["basis"], mini["samples"], mini["model"]) == ("history", 2, "gpt-4o-mini")
    assert mini["estimated_tokens"] == (150 + 450) // 2
    assert mini["estimated_cost_usd"] == pytest.approx(float(sum(d.cost_usd for d in ok)) / 2)
    assert mini["estimated_cost_usd"] == pytest.approx((200 * 0.15 + 100 * 0.6) / 1e6)
    assert mini["estimated_latency_ms"] == pytest.approx(float(sum(d.duration_ms for d in ok)) / 2, abs=0.01)
    assert mini["failure_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert (gpt4o["basis"], gpt4o["samples"], gpt4o["estimated_tokens"]) == ("history", 1, 10000)
    assert (fresh["basis"], fresh["samples"], fresh["failure_rate"]) == ("cost_model", 0, None)
