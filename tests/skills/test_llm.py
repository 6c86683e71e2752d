"""llm.complete through invoke_skill, with the real Anthropic and OpenAI SDKs talking to a local fake provider."""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest

from aos.config import load_settings, reset_settings
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SideEffect, SkillContext
from aos.skills.llm import SKILLS, LlmComplete, pricing
from aos.skills.llm.providers import OFFLINE_PREFIX
from tests.support.llm_server import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeLlmServer,
    ScriptedResponse,
    anthropic_error,
    anthropic_message,
    openai_completion,
    openai_error,
)

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
OPENAI_KEY = "sk-proj-test-fedcba9876543210"
SKILL = LlmComplete()
# a plan-chosen base_url passes the SSRF guard: the fake server on loopback must be allowed explicitly
LOCAL_ALLOWED = {"AOS_HTTP_ALLOW_HOSTS": "127.0.0.1,localhost"}



@pytest.fixture
def server():
    with FakeLlmServer() as srv:
        yield srv


def make_ctx(env: dict[str, str], timeout_s: float | None = 5.0) -> SkillContext:
    return SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1", settings=load_settings(env),
                        idempotency_key="r1:s1:1", timeout_s=timeout_s)


def provider_env(srv: FakeLlmServer, **extra: str) -> dict[str, str]:
    env = {"AOS_ANTHROPIC_API_KEY": ANTHROPIC_KEY, "AOS_ANTHROPIC_BASE_URL": srv.url,
           "AOS_OPENAI_API_KEY": OPENAI_KEY, "AOS_OPENAI_BASE_URL": srv.openai_url}
    env.update(extra)
    return env


def sent_key(headers: dict[str, str]) -> str | None:
    # the SDK decides between x-api-key and a bearer token (anthropic 2.x sends Bearer)
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


# --- Anthropic -------------------------------------------------------------------------


def test_anthropic_request_carries_model_system_messages_and_credentials(server):
    outcome, _ = invoke_skill(SKILL, {"prompt": "Name a colour.", "system": "Answer in one word.",
                                      "max_tokens": 64, "temperature": 0.2, "stop": ["\n\n"]},
                              make_ctx(provider_env(server)))

    assert outcome.status == "ok", outcome.error
    [req] = server.requests
    assert req.path == ANTHROPIC_PATH
    assert req.body["model"] == "claude-sonnet-4-6"
    assert req.body["max_tokens"] == 64
    assert req.body["system"] == "Answer in one word."
    assert req.body["messages"] == [{"role": "user", "content": "Name a colour."}]
    assert req.body["temperature"] == 0.2
    assert req.body["stop_sequences"] == ["\n\n"]
    assert sent_key(req.headers) == ANTHROPIC_KEY
    assert req.headers.get("anthropic-version")


def test_anthropic_usage_is_priced_from_the_table_and_raw_response_is_recorded(server):
    server.push(anthropic_message("Blue.", model="claude-sonnet-4-5-20250929", input_tokens=1000,
                                  output_tokens=500))

    outcome, raw = invoke_skill(SKILL, {"prompt": "Name a colour."}, make_ctx(provider_env(server)))

    assert outcome.output == {"text": "Blue.", "model": "claude-sonnet-4-5-20250929", "provider": "anthropic",
                              "stop_reason": "end_turn", "usage": {"input_tokens": 1000, "output_tokens": 500}}
    # claude-sonnet-4-5: $3 in / $15 out per million tokens
    assert outcome.usage.cost_usd == pytest.approx((1000 * 3 + 500 * 15) / 1e6)
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (1000, 500)
    assert raw["id"] == "msg_01FakeServer"
    assert raw["content"] == [{"type": "text", "text": "Blue."}]


def test_conversation_messages_are_sent_in_order(server):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "And now?"}]

    outcome, _ = invoke_skill(SKILL, {"messages": conversation}, make_ctx(provider_env(server)))

    assert outcome.ok
    assert server.requests[0].body["messages"] == conversation
    assert "system" not in server.requests[0].body


def test_refusal_stop_reason_is_content_filtered_with_usage_kept(server):
    server.push(anthropic_message("", stop_reason="refusal", input_tokens=40, output_tokens=0))

    outcome, _ = invoke_skill(SKILL, {"prompt": "something refused"}, make_ctx(provider_env(server)))

    assert outcome.error.code == "LLM_CONTENT_FILTERED"
    assert outcome.usage.input_tokens == 40


ANTHROPIC_ERRORS = [
    (anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit",
                     {"retry-after": "7"}), "LLM_RATE_LIMITED"),
    (anthropic_error(401, "authentication_error", "invalid x-api-key"), "LLM_AUTH_FAILED"),
    (anthropic_error(403, "permission_error", "Your API key does not have permission"), "LLM_AUTH_FAILED"),
    (anthropic_error(404, "not_found_error", "model: claude-nonexistent"), "LLM_MODEL_NOT_FOUND"),
    (anthropic_error(400, "invalid_request_error", "prompt is too long: 212000 tokens > 200000 maximum"),
     "LLM_CONTEXT_TOO_LONG"),
    (anthropic_error(400, "invalid_request_error", "temperature: range: 0..1"), "LLM_INVALID_REQUEST"),
    (anthropic_error(529, "overloaded_error", "Overloaded"), "LLM_OVERLOADED"),
    (anthropic_error(500, "api_error", "Internal server error"), "LLM_PROVIDER_ERROR"),
]


@pytest.mark.parametrize(("scripted", "code"), ANTHROPIC_ERRORS,
                         ids=[f"{s.status}-{c}" for s, c in ANTHROPIC_ERRORS])
def test_anthropic_error_status_maps_to_its_llm_code_after_exactly_one_request(server, scripted, code):
    server.push(scripted)

    outcome, raw = invoke_skill(SKILL, {"prompt": "hello"}, make_ctx(provider_env(server)))

    assert outcome.status == "error"
    assert outcome.error.code == code
    assert outcome.error.details["status"] == scripted.status
    assert raw is None
    # max_retries=0: the engine, not the SDK, decides about retries
    assert len(server.requests) == 1


def test_anthropic_rate_limit_carries_the_retry_after_hint(server):
    server.push(anthropic_error(429, "rate_limit_error", "slow down", {"retry-after": "7"}))

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello"}, make_ctx(provider_env(server)))

    assert outcome.error.code == "LLM_RATE_LIMITED"
    assert outcome.error.details["retry_after_s"] == 7.0
    assert outcome.error.details["provider_error_type"] == "rate_limit_error"


def test_slow_provider_fails_with_llm_timeout_without_retrying(server):
    server.push(ScriptedResponse(200, anthropic_message().body, delay_s=3.0))

    t0 = time.monotonic()
    outcome, _ = invoke_skill(SKILL, {"prompt": "hello"}, make_ctx(provider_env(server), timeout_s=0.5))

    assert outcome.error.code == "LLM_TIMEOUT"
    assert time.monotonic() - t0 < 2.5
    assert len(server.requests) == 1


def test_unreachable_provider_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = {"AOS_ANTHROPIC_API_KEY": ANTHROPIC_KEY, "AOS_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed_port}"}

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello"}, make_ctx(env))

    assert outcome.error.code == "LLM_CONNECTION_ERROR"


def test_malformed_success_body_is_a_provider_error(server):
    server.push(ScriptedResponse(200, b"<html>gateway says hi</html>"))

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello"}, make_ctx(provider_env(server)))

    assert outcome.error.code == "LLM_PROVIDER_ERROR"


@pytest.mark.parametrize(("provider", "variable"), [("anthropic", "AOS_ANTHROPIC_API_KEY"),
                                                     ("openai", "AOS_OPENAI_API_KEY")])
def test_missing_api_key_is_not_configured_and_names_the_variable(server, provider, variable):
    env = {"AOS_ANTHROPIC_BASE_URL": server.url, "AOS_OPENAI_BASE_URL": server.openai_url}

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello", "provider": provider}, make_ctx(env))

    assert outcome.error.code == "LLM_NOT_CONFIGURED"
    assert variable in outcome.error.message
    assert "offline" in outcome.error.message
    assert server.requests == []


# --- OpenAI and OpenAI-compatible ------------------------------------------------------


def test_openai_success_maps_text_usage_and_cost(server):
    server.push(openai_completion("Green.", model="gpt-4o-mini-2024-07-18", prompt_tokens=2000,
                                  completion_tokens=100))

    outcome, raw = invoke_skill(SKILL, {"prompt": "Name a colour.", "provider": "openai", "system": "Be brief.",
                                        "max_tokens": 50}, make_ctx(provider_env(server)))

    assert outcome.output["text"] == "Green."
    assert outcome.output["provider"] == "openai"
    assert outcome.output["stop_reason"] == "end_turn"
    assert outcome.output["usage"] == {"input_tokens": 2000, "output_tokens": 100}
    # gpt-4o-mini (not gpt-4o): $0.15 in / $0.60 out per million tokens
    assert outcome.usage.cost_usd == pytest.approx((2000 * 0.15 + 100 * 0.6) / 1e6)
    assert raw["id"] == "chatcmpl-fake"
    [req] = server.requests
    assert req.path == OPENAI_PATH
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.body["model"] == "gpt-4o-mini"
    assert req.body["max_completion_tokens"] == 50
    assert req.body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Name a colour."}]


def test_openai_compatible_server_at_args_base_url_needs_no_key(server):
    server.push(openai_completion("local answer", model="llama3.1:8b"))

    outcome, _ = invoke_skill(SKILL, {"prompt": "hi", "provider": "openai_compatible", "model": "llama3.1:8b",
                                      "base_url": server.openai_url}, make_ctx(LOCAL_ALLOWED))

    assert outcome.ok, outcome.error
    assert outcome.output["provider"] == "openai_compatible"
    assert outcome.output["text"] == "local answer"
    # a local model has no price: cost 0 and a warning, not a failure
    assert outcome.usage.cost_usd == 0
    assert "llama3.1:8b" in outcome.output["warnings"][0]
    [req] = server.requests
    assert req.headers["authorization"] == "Bearer not-needed"
    assert req.body["max_tokens"] == 1024


def test_configured_openai_key_is_never_sent_to_a_plan_chosen_base_url(server):
    env = {"AOS_OPENAI_API_KEY": OPENAI_KEY, "AOS_OPENAI_BASE_URL": "https://api.openai.com/v1", **LOCAL_ALLOWED}

    outcome, _ = invoke_skill(SKILL, {"prompt": "hi", "provider": "openai_compatible",
                                      "base_url": server.openai_url}, make_ctx(env))

    assert outcome.ok
    assert OPENAI_KEY not in json.dumps(server.requests[0].headers)


OPENAI_ERRORS = [
    (openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                  {"retry-after": "3"}), "LLM_RATE_LIMITED"),
    (openai_error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
     "LLM_AUTH_FAILED"),
    (openai_error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
     "LLM_AUTH_FAILED"),
    (openai_error(404, "The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"),
     "LLM_MODEL_NOT_FOUND"),
    (openai_error(400, "This model's maximum context length is 128000 tokens", "invalid_request_error",
                  "context_length_exceeded"), "LLM_CONTEXT_TOO_LONG"),
    (openai_error(400, "Invalid value for 'temperature'", "invalid_request_error", None), "LLM_INVALID_REQUEST"),
    (openai_error(500, "The server had an error", "server_error", None), "LLM_PROVIDER_ERROR"),
    (openai_error(503, "The engine is currently overloaded", "server_error", None), "LLM_OVERLOADED"),
]


@pytest.mark.parametrize(("scripted", "code"), OPENAI_ERRORS,
                         ids=[f"{s.status}-{c}" for s, c in OPENAI_ERRORS])
def test_openai_error_status_maps_to_its_llm_code_after_exactly_one_request(server, scripted, code):
    server.push(scripted)

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello", "provider": "openai"}, make_ctx(provider_env(server)))

    assert outcome.error.code == code
    assert len(server.requests) == 1


def test_openai_rate_limit_carries_the_retry_after_hint(server):
    server.push(openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after": "3"}))

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello", "provider": "openai"}, make_ctx(provider_env(server)))

    assert outcome.error.details["retry_after_s"] == 3.0


def test_openai_content_filter_finish_reason_is_content_filtered(server):
    server.push(openai_completion(None, finish_reason="content_filter"))

    outcome, _ = invoke_skill(SKILL, {"prompt": "hello", "provider": "openai"}, make_ctx(provider_env(server)))

    assert outcome.error.code == "LLM_CONTENT_FILTERED"


# --- JSON output -----------------------------------------------------------------------


def test_json_output_is_asked_for_and_parsed(server):
    server.push(anthropic_message('```json\n{"city": "Paris", "temp_c": 21}\n```'))

    outcome, _ = invoke_skill(SKILL, {"prompt": "Weather as JSON", "system": "You are terse.",
                                      "json_output": True}, make_ctx(provider_env(server)))

    assert outcome.output["json"] == {"city": "Paris", "temp_c": 21}
    system = server.requests[0].body["system"]
    assert system.startswith("You are terse.") and "JSON" in system


def test_openai_json_output_requests_the_json_object_format(server):
    server.push(openai_completion('{"ok": true}'))

    outcome, _ = invoke_skill(SKILL, {"prompt": "Answer as JSON", "provider": "openai", "json_output": True},
                              make_ctx(provider_env(server)))

    assert outcome.output["json"] == {"ok": True}
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


def test_reply_that_is_not_json_fails_with_output_invalid_json_and_keeps_usage(server):
    server.push(anthropic_message("Sure! Here is the JSON you asked for.", input_tokens=30, output_tokens=10))

    outcome, _ = invoke_skill(SKILL, {"prompt": "JSON please", "json_output": True},
                              make_ctx(provider_env(server)))

    assert outcome.error.code == "LLM_OUTPUT_INVALID_JSON"
    assert outcome.error.details["text_start"].startswith("Sure!")
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (30, 10)
    assert outcome.usage.cost_usd > 0


# --- offline provider ------------------------------------------------------------------


def test_offline_provider_is_deterministic_says_so_and_calls_no_network(server):
    ctx = make_ctx(provider_env(server, AOS_LLM_PROVIDER="offline"))
    args = {"prompt": "Summarise the weather in Paris.", "system": "Be brief.", "max_tokens": 200}

    first, raw1 = invoke_skill(SKILL, args, ctx)
    second, raw2 = invoke_skill(SKILL, dict(args), ctx)
    other, _ = invoke_skill(SKILL, {**args, "prompt": "Summarise the weather in Oslo."}, ctx)

    assert first.ok, first.error
    assert first.output == second.output and first.usage == second.usage and raw1 == raw2
    assert first.output["provider"] == "offline"
    assert first.output["text"].startswith(OFFLINE_PREFIX)
    assert "Summarise the weather in Paris." in first.output["text"]
    assert other.output["text"] != first.output["text"]
    assert first.usage.cost_usd == 0 and first.usage.output_tokens > 0
    assert server.requests == []


def test_offline_json_output_is_a_deterministic_object():
    ctx = make_ctx({})
    args = {"prompt": "Give me JSON", "provider": "offline", "json_output": True}

    first, _ = invoke_skill(SKILL, args, ctx)
    second, _ = invoke_skill(SKILL, args, ctx)

    assert first.output["json"] == second.output["json"]
    assert first.output["json"]["offline"] is True


def test_offline_provider_honours_max_tokens():
    outcome, _ = invoke_skill(SKILL, {"prompt": "x" * 500, "provider": "offline", "max_tokens": 5}, make_ctx({}))

    assert outcome.output["usage"]["output_tokens"] <= 5
    assert outcome.output["stop_reason"] == "max_tokens"


# --- defaults, args, pricing -------------------------------------------------------------


def test_default_provider_and_model_come_from_settings(server):
    ctx = make_ctx(provider_env(server, AOS_LLM_PROVIDER="openai", AOS_LLM_MODEL="gpt-4.1"))

    invoke_skill(SKILL, {"prompt": "hi"}, ctx)
    invoke_skill(SKILL, {"prompt": "hi", "provider": "anthropic"}, ctx)

    assert (server.requests[0].path, server.requests[0].body["model"]) == (OPENAI_PATH, "gpt-4.1")
    # AOS_LLM_MODEL names a model of the default provider only
    assert (server.requests[1].path, server.requests[1].body["model"]) == (ANTHROPIC_PATH, "claude-sonnet-4-6")


@pytest.mark.parametrize("args", [
    {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
    {"system": "no prompt at all"},
    {"prompt": "a", "temperature": 3},
    {"prompt": "a", "messages_typo": []},
    {"messages": [{"role": "system", "content": "roles are user|assistant"}]},
])
def test_malformed_args_are_refused_before_any_call(server, args):
    outcome, _ = invoke_skill(SKILL, args, make_ctx(provider_env(server)))

    assert outcome.error.code == "SKILL_ARGS_INVALID"
    assert server.requests == []


def test_base_url_is_refused_for_providers_other_than_openai_compatible(server):
    outcome, _ = invoke_skill(SKILL, {"prompt": "a", "base_url": server.openai_url},
                              make_ctx(provider_env(server)))

    assert outcome.error.code == "SKILL_ARGS_INVALID"
    assert server.requests == []


def test_pricing_lookup_is_exact_then_longest_prefix_at_a_boundary():
    table = pricing.price_table()

    assert pricing.lookup("claude-sonnet-4-5-20250929", table).entry == "claude-sonnet-4-5"
    assert pricing.lookup("claude-sonnet-4-20250514", table).entry == "claude-sonnet-4"
    assert pricing.lookup("gpt-4o-mini-2024-07-18", table).entry == "gpt-4o-mini"
    assert pricing.lookup("gpt-4o", table).entry == "gpt-4o"
    assert pricing.lookup("gpt-4oxyz", table) is None
    assert pricing.lookup("my-local-model", table) is None


def test_pricing_override_from_settings_changes_the_cost(server):
    server.push(anthropic_message(model="claude-sonnet-4-5-20250929", input_tokens=1_000_000, output_tokens=0))
    override = json.dumps({"claude-sonnet-4-5": {"input_per_mtok": 1.25, "output_per_mtok": 2.5}})

    outcome, _ = invoke_skill(SKILL, {"prompt": "hi"},
                              make_ctx(provider_env(server, AOS_LLM_PRICING=override)))

    assert outcome.usage.cost_usd == pytest.approx(1.25)


def test_malformed_pricing_override_is_not_configured_and_calls_nothing(server):
    override = json.dumps({"claude-sonnet-4-5": {"input_per_mtok": "cheap"}})

    outcome, _ = invoke_skill(SKILL, {"prompt": "hi"}, make_ctx(provider_env(server, AOS_LLM_PRICING=override)))

    assert outcome.error.code == "LLM_NOT_CONFIGURED"
    assert "AOS_LLM_PRICING" in outcome.error.message
    assert server.requests == []


def test_cost_model_estimates_prompt_chars_and_max_tokens_at_the_model_price(monkeypatch):
    monkeypatch.delenv("AOS_LLM_PRICING", raising=False)
    reset_settings()
    try:
        est = SKILL.cost_model.estimate({"prompt": "x" * 400, "model": "claude-sonnet-4-5", "max_tokens": 100,
                                         "provider": "anthropic"})
    finally:
        reset_settings()

    assert est.tokens == 101 + 100
    assert est.cost_usd == pytest.approx((101 * 3 + 100 * 15) / 1e6)
    assert est.latency_ms == 2000


def test_skill_declares_idempotent_nondeterministic_with_engine_owned_retries():
    assert [s.ref for s in SKILLS] == ["llm.complete@1"]
    assert SKILL.side_effect is SideEffect.IDEMPOTENT
    assert SKILL.deterministic is False
    assert (SKILL.default_retry.max_attempts, SKILL.default_timeout_s, SKILL.recommended) == (4, 120.0, 3)


# --- secrets -------------------------------------------------------------------------------


def test_api_key_never_appears_in_any_outcome(server):
    ctx = make_ctx(provider_env(server), timeout_s=0.5)
    server.push(
        anthropic_message(),
        anthropic_error(401, "authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}"),
        anthropic_error(400, "invalid_request_error", f"bad header Authorization: Bearer {ANTHROPIC_KEY}"),
        openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}", code="invalid_api_key"),
        ScriptedResponse(500, f"proxy error for key {OPENAI_KEY}".encode()),
        ScriptedResponse(200, {}, delay_s=2.0),
    )
    calls = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d", "provider": "openai"},
             {"prompt": "e", "provider": "openai"}, {"prompt": "f"}]

    outcomes = [invoke_skill(SKILL, args, ctx)[0] for args in calls]

    assert [o.status for o in outcomes] == ["ok"] + ["error"] * 5
    for outcome in outcomes:
        text = json.dumps(outcome.to_dict())
        assert ANTHROPIC_KEY not in text and OPENAI_KEY not in text, text


def test_a_plan_chosen_base_url_passes_the_ssrf_guard():
    # 169.254.169.254 is the cloud metadata service: a plan must not reach it through llm.complete
    outcome, _ = invoke_skill(SKILL, {"prompt": "a", "provider": "openai_compatible",
                                      "base_url": "http://169.254.169.254/v1"}, make_ctx({}))
    assert outcome.status == "error"
    assert outcome.error.code == "HTTP_SSRF_BLOCKED"


def test_a_plan_chosen_base_url_respects_the_agents_http_hosts(server):
    ctx = make_ctx(LOCAL_ALLOWED)
    ctx = dataclasses.replace(ctx, capabilities={"http_hosts": ["llm.example.com"]})
    outcome, _ = invoke_skill(SKILL, {"prompt": "a", "provider": "openai_compatible",
                                      "base_url": server.openai_url}, ctx)
    assert outcome.error.code == "CAPABILITY_DENIED"
    assert server.requests == []


def test_the_server_has_one_retry_after_parser_and_it_never_raises():
    """http.request, llm.complete and webhooks read a remote's hint through aos.skills.retry_after."""
    import inspect

    from aos.services import webhooks
    from aos.skills import http
    from aos.skills.llm import providers
    from aos.skills.retry_after import parse_retry_after

    assert http.parse_retry_after is parse_retry_after and webhooks.parse_retry_after is parse_retry_after
    assert "parse_retry_after(" in inspect.getsource(providers._retry_after_s)
    for bad in ("soon", "inf", "nan", "-", "Mon, 99 Foo 2025", "1e999"):
        assert parse_retry_after(bad) is None, bad
        assert providers._retry_after_s({"retry-after": bad}) is None, bad
    assert providers._retry_after_s({"retry-after-ms": "1500", "retry-after": "soon"}) == 1.5
    assert providers._retry_after_s({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
