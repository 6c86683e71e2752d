"""How a non-deterministic skill answers a replay: from the recorded response, with no network, giving the
same outcome the live call gave (through invoke_skill, as the engine calls it)."""

from __future__ import annotations

import pytest

from aos.config import load_settings
from aos.golden.record import timeless
from aos.golden.replay import ReplayedSkill
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SkillContext
from aos.skills.http import HttpRequest
from aos.skills.llm import LlmComplete
from tests.support.http_server import Reply, serve_http
from tests.support.llm_server import FakeLlmServer, anthropic_message, openai_completion

ENV = {"AOS_ANTHROPIC_API_KEY": "sk-ant-test-0123456789", "AOS_HTTP_ALLOW_HOSTS": "127.0.0.1",
       "AOS_OPENAI_API_KEY": "sk-proj-test-0123456789"}


def _ctx(env: dict[str, str]) -> SkillContext:
    return SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1", settings=load_settings(env),
                        idempotency_key="r1:s1:1", timeout_s=5)


def _recorded(outcome, raw) -> dict:
    return {"skill": "x@1", "deterministic": False, "args": {}, "outcome": timeless(outcome.to_dict()), "raw": raw}


def _live_then_replayed(skill, args, env, stop):
    live, raw = invoke_skill(skill, args, _ctx(env))
    stop()
    replayed, replayed_raw = invoke_skill(ReplayedSkill(skill, _recorded(live, raw)), args, _ctx(env))
    return live, raw, replayed, replayed_raw


@pytest.mark.parametrize("provider", ["anthropic", "openai", "offline"])
def test_llm_replay_reads_the_recorded_provider_body_to_the_same_outcome(provider):
    srv = FakeLlmServer().start()
    srv.push(anthropic_message("Sunny, 21.5 degrees.", input_tokens=30, output_tokens=9) if provider == "anthropic"
             else openai_completion('{"temp": 21.5}', prompt_tokens=30, completion_tokens=9))
    env = {**ENV, "AOS_ANTHROPIC_BASE_URL": srv.url, "AOS_OPENAI_BASE_URL": srv.openai_url}
    args = {"prompt": "Weather in Paris?", "provider": provider, "max_tokens": 100,
            **({"json_output": True} if provider == "openai" else {})}
    live, raw, replayed, replayed_raw = _live_then_replayed(LlmComplete(), args, env, srv.stop)
    assert live.ok, live.error
    assert len(srv.requests) == (0 if provider == "offline" else 1)  # the replay sent nothing (server stopped)
    assert replayed.hashable() == live.hashable() and replayed_raw == raw
    if provider != "offline":
        assert replayed.usage.cost_usd > 0  # priced again from the recorded token counts


def test_llm_replay_of_a_changed_pricing_table_shows_in_the_outcome():
    srv = FakeLlmServer().start()
    srv.push(anthropic_message("ok", model="claude-sonnet-4-5", input_tokens=1000, output_tokens=1000))
    env = {**ENV, "AOS_ANTHROPIC_BASE_URL": srv.url}
    live, raw = invoke_skill(LlmComplete(), {"prompt": "hi", "provider": "anthropic"}, _ctx(env))
    srv.stop()
    repriced = {**env, "AOS_LLM_PRICING": '{"claude-sonnet-4-5": {"input_per_mtok": 1, "output_per_mtok": 1}}'}
    replayed, _ = invoke_skill(ReplayedSkill(LlmComplete(), _recorded(live, raw)),
                               {"prompt": "hi", "provider": "anthropic"}, _ctx(repriced))
    assert replayed.output == live.output and replayed.usage.cost_usd == pytest.approx(0.002)
    assert replayed.usage.cost_usd != live.usage.cost_usd


def test_http_replay_returns_the_recorded_response_and_sends_nothing():
    with serve_http({"/w": Reply(json={"t": 21.5}, headers={"X-Trace": "abc"})}) as srv:
        url = srv.url("/w")
        live, raw = invoke_skill(HttpRequest(), {"url": url}, _ctx(ENV))
        sent = len(srv.requests)
    replayed, replayed_raw = invoke_skill(ReplayedSkill(HttpRequest(), _recorded(live, raw)), {"url": url}, _ctx(ENV))
    assert sent == 1 and live.ok
    assert replayed.hashable() == live.hashable() and replayed_raw == raw
    assert replayed.output["headers"]["x-trace"] == "abc"


def test_a_recorded_failure_comes_back_as_the_same_classified_failure():
    with serve_http({"/busy": Reply(503, json={"e": 1}, headers={"Retry-After": "3"})}) as srv:
        url = srv.url("/busy")
        live, raw = invoke_skill(HttpRequest(), {"url": url}, _ctx(ENV))
    assert not live.ok and live.error.code == "HTTP_SERVICE_UNAVAILABLE" and raw is None
    replayed, _ = invoke_skill(ReplayedSkill(HttpRequest(), _recorded(live, raw)), {"url": url}, _ctx(ENV))
    assert replayed.hashable() == live.hashable()
    assert replayed.error.details["retry_after_s"] == 3.0  # the engine's RETRY_AFTER decision sees the same hint


def test_no_recorded_call_fails_with_replay_missing_and_args_are_still_validated():
    skill = ReplayedSkill(HttpRequest(), None)
    out, _ = invoke_skill(skill, {"url": "http://127.0.0.1:9/never"}, _ctx(ENV))
    assert out.error.code == "GOLDEN_REPLAY_MISSING" and not out.error.retryable
    assert "never calls a non-deterministic skill" in out.error.message
    bad, _ = invoke_skill(skill, {"nope": 1}, _ctx(ENV))
    assert bad.error.code == "SKILL_ARGS_INVALID"  # the real skill's schema still applies


def test_a_replayed_skill_presents_the_real_skills_identity_and_policies():
    real = LlmComplete()
    wrapped = ReplayedSkill(real, None)
    assert (wrapped.ref, wrapped.deterministic, wrapped.input_schema, wrapped.default_retry) == \
        (real.ref, real.deterministic, real.input_schema, real.default_retry)
