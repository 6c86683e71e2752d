"""sanitize_for_embedding: every shape it promises, and (property tests) nothing planted reaches a provider."""

from __future__ import annotations

import json
import logging
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aos.services import recovery
from aos.services.recovery.sanitize import SanitizingFilter, sanitize_for_embedding, sanitize_value
from tests.services.recovery.helpers import failed_run
from tests.support.llm_server import FakeLlmServer, anthropic_message

ALNUM = string.ascii_letters + string.digits


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


@pytest.mark.parametrize(("text", "gone", "placeholder"), [
    ("key sk-proj-abcdefghijklmnop1234 used", "sk-proj-abcdefghijklmnop1234", "<"),
    ("anthropic sk-ant-api03-Zx9_abcdefghijkl rejected", "Zx9_abcdefghijkl", "<"),
    ("aos_0123456789ab_SECRETsecretSECRETsecret1 bad", "SECRETsecret", "<"),
    ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ", "<"),
    ("stripe sk_live_51HabcdefGHIJKL failed", "sk_live_51H", "<api-key>"),
    ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "<api-key>"),
    ("gh ghp_0123456789abcdefghijABCDEFGHIJ12 expired", "ghp_0123", "<api-key>"),
    ("got Bearer abcdefghijklmnopqrstuvwxyz012345 back", "abcdefghijklmnop", "<token>"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJzdWIiOiIxMjM0In0", "<jwt>"),
    ("connect postgres://app:Hunter2Secret@db.internal/x", "Hunter2Secret", "@db.internal"),
    ("user alice.smith+ops@example.co.uk unknown", "alice.smith", "<email>"),
    ("card 4111 1111 1111 1111 declined", "4111 1111", "<card>"),
    ("card 5500-0000-0000-0004 declined", "5500-0000", "<card>"),
    ("call +1 (415) 555-0100 now", "555-0100", "<phone>"),
    ("call +44 20 7946 0958 now", "7946 0958", "<phone>"),
])
def test_each_promised_shape_is_replaced(text, gone, placeholder):
    out = sanitize_for_embedding(text)
    assert gone not in out and placeholder in out


def test_a_number_that_fails_luhn_is_not_a_card_and_text_keeps_its_sense():
    assert "<card>" not in sanitize_for_embedding("order 4111 1111 1111 1112 shipped")
    assert sanitize_for_embedding("GET /users returned 404 Not Found") == "GET /users returned 404 Not Found"


def test_sanitising_is_idempotent_and_values_lose_credential_keys():
    text = "Bearer abcdefghijklmnopqrstuvwx for bob@example.com card 4111111111111111"
    once = sanitize_for_embedding(text)
    assert sanitize_for_embedding(once) == once
    assert sanitize_value({"password": "p", "nested": [{"api_key": "k", "note": "mail bob@example.com"}]}) == \
        {"password": "<secret>", "nested": [{"api_key": "<secret>", "note": "mail <email>"}]}


def test_the_logging_filter_sanitises_messages_and_args(caplog):
    logger = logging.getLogger("tests.recovery.sanitize")
    logger.addFilter(SanitizingFilter())
    with caplog.at_level(logging.INFO, logger="tests.recovery.sanitize"):
        logger.info("failure for %s with %s", "bob@example.com", "sk-proj-abcdefghijklmnop1234")
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "tests.recovery.sanitize"]
    assert "bob@example.com" not in logged and "sk-proj-abcdefghij" not in logged
    assert logged == "failure for <email> with <secret>"


# --- property: planted secrets never reach a provider -----------------------------------------------------

_word = st.text(ALNUM, min_size=16, max_size=32)
_secrets = st.one_of(
    _word.map(lambda w: f"sk-proj-{w}"),
    _word.map(lambda w: f"sk-ant-api03-{w}"),
    st.tuples(st.text("0123456789abcdef", min_size=12, max_size=12), _word).map(lambda p: f"aos_{p[0]}_{p[1]}"),
    _word.map(lambda w: f"whsec_{w}"),
    _word.map(lambda w: f"Bearer Tk{w}"),
    st.tuples(_word, _word, _word).map(lambda p: f"eyJ{p[0]}.eyJ{p[1]}.{p[2]}"),
    _word.map(lambda w: f"https://svc:Pw{w}@db.example.com/x"),
    st.tuples(st.text(string.ascii_lowercase, min_size=3, max_size=12), st.sampled_from(["example.com", "corp.io"]))
    .map(lambda p: f"{p[0]}.mailbox@{p[1]}"),
    st.text(string.digits, min_size=15, max_size=15).map(lambda d: _luhn_complete("4" + d[1:])),
    st.tuples(st.integers(10, 99), st.integers(200, 999), st.integers(200, 999), st.integers(1000, 9999))
    .map(lambda p: f"+{p[0]} {p[1]} {p[2]} {p[3]}"),
)


def _planted_parts(secret: str) -> list[str]:
    """What must not arrive: the secret itself and, for a credential in a URL or a header, its secret part."""
    parts = [secret]
    if secret.startswith("Bearer "):
        parts.append(secret.removeprefix("Bearer "))
    if "://" in secret:
        parts.append(secret.split(":")[2].split("@")[0])
    if secret.replace(" ", "").isdigit() or secret.startswith("+"):
        parts.append("".join(ch for ch in secret if ch.isdigit()))
    return parts


@pytest.fixture(scope="module")
def provider():
    with FakeLlmServer() as srv:
        yield srv


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=_secrets, where=st.sampled_from(["message", "args", "both"]))
def test_planted_secrets_never_reach_the_provider(secret, where, tenant, provider, settings_env):
    settings_env(AOS_RECOVERY_LLM_PROVIDER="anthropic", AOS_RECOVERY_EMBEDDER="openai",
                 AOS_ANTHROPIC_API_KEY="sk-ant-test-key-000000", AOS_ANTHROPIC_BASE_URL=provider.url,
                 AOS_OPENAI_API_KEY="sk-test-openai-000000", AOS_OPENAI_BASE_URL=provider.openai_url)
    ctx, _ = tenant
    seen = len(provider.requests)
    message = f"upstream refused {secret} while syncing" if where != "args" else "upstream refused while syncing"
    args = {"url": "https://api.example.com/v1", "note": f"for {secret}", "headers": {"X-Trace": secret}} \
        if where != "message" else {"url": "https://api.example.com/v1"}
    got = recovery.suggest_for_run(failed_run(ctx, "HTTP_CONNECT_ERROR", message, args=args))
    sent = [json.dumps(r.body) + json.dumps(r.headers) for r in provider.requests[seen:]]
    assert sent, "the provider was not called"
    for part in _planted_parts(secret):
        assert not any(part in body for body in sent), f"{part!r} reached the provider"
        assert part not in json.dumps(got)


def test_a_valid_anthropic_answer_is_stored_and_an_invalid_one_discarded(tenant, provider, settings_env):
    settings_env(AOS_RECOVERY_LLM_PROVIDER="anthropic", AOS_ANTHROPIC_API_KEY="sk-ant-test-key-000000",
                 AOS_ANTHROPIC_BASE_URL=provider.url)
    ctx, _ = tenant
    answer = {"mode": "RETRY", "parameters": {"delay_s": 12}, "explanation": "The pool was exhausted; retry later.",
              "confidence": 0.8}
    provider.push(anthropic_message(json.dumps(answer)))
    good = recovery.suggest_for_run(failed_run(ctx, "HTTP_CONNECT_ERROR", "pool qqzzkk exhausted"))
    assert (good["layer"], good["mode"], good["parameters"], good["confidence"]) == ("llm", "RETRY", {"delay_s": 12}, 0.8)
    assert good["metadata"]["provider"] == "anthropic"
    sent = provider.requests[-1]
    assert sent.path == "/v1/messages" and "HTTP_CONNECT_ERROR" in sent.body["messages"][0]["content"]
    provider.push(anthropic_message(json.dumps({"mode": "REBOOT_THE_WORLD", "explanation": "x", "confidence": 2})))
    bad = recovery.suggest_for_run(failed_run(ctx, "HTTP_CONNECT_ERROR", "socket vvwwyy closed by peer"))
    assert bad["layer"] == "catalog" and bad["pattern_id"] is None and bad["metadata"]["discarded"]
    assert "REBOOT" not in json.dumps(recovery.list_patterns(ctx))
