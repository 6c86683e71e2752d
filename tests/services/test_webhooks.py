"""Webhook signing, one delivery against a real receiver, and the tenant's endpoint settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import UTC, datetime

import pytest

from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import webhooks
from aos.services.webhooks import DeliveryResult, WebhookRequest, deliver, sign, verify_signature
from tests.support.http_server import Reply, serve_http

SECRET = "whsec_test"
BODY = b'{"data":{"run_id":"r"},"id":"7","type":"run.succeeded"}'


# --- signing ---------------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body_and_verifies():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature(SECRET, header, BODY, now=1_700_000_100)
    assert verify_signature(SECRET, header, BODY.decode(), now=1_700_000_100)  # str bodies too


@pytest.mark.parametrize("case", ["tampered-body", "wrong-secret", "too-old", "from-the-future", "no-v1",
                                  "no-timestamp", "garbage", "empty"])
def test_a_bad_or_stale_signature_does_not_verify(case):
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    now = 1_700_000_010
    secret, body = SECRET, BODY
    if case == "tampered-body":
        body = BODY.replace(b'"r"', b'"x"')
    elif case == "wrong-secret":
        secret = "whsec_other"
    elif case == "too-old":
        now = 1_700_000_000 + 301
    elif case == "from-the-future":
        now = 1_700_000_000 - 301
    elif case == "no-v1":
        header = "t=1700000000"
    elif case == "no-timestamp":
        header = header.split(",", 1)[1]
    elif case == "garbage":
        header = "v1=zz,t=abc"
    elif case == "empty":
        header = ""
    assert not verify_signature(secret, header, body, tolerance_s=300, now=now)


def test_any_one_of_several_v1_signatures_may_match():
    good = sign(SECRET, BODY, timestamp=1_700_000_000)
    header = "t=1700000000,v1=" + "0" * 64 + "," + good.split(",")[1]
    assert verify_signature(SECRET, header, BODY, now=1_700_000_000)


# --- one delivery --------------------------------------------------------------------------------------------


def _req(url: str, **kw) -> WebhookRequest:
    return WebhookRequest(url=url, secret=SECRET, outbox_id=kw.pop("outbox_id", 42), topic="run.failed",
                          body=BODY, attempt=kw.pop("attempt", 1))


def test_delivery_posts_the_body_with_id_event_attempt_and_a_signature_that_verifies(aos_env):
    with serve_http({"POST /hook": Reply(204)}) as srv:
        result = deliver(_req(srv.url("/hook"), attempt=3), timeout_s=5)
        req = srv.requests[0]
    assert result == DeliveryResult(True, status=204)
    assert req.body == BODY
    assert req.headers["content-type"] == "application/json"
    assert req.headers["aos-webhook-id"] == "42"
    assert req.headers["aos-event"] == "run.failed"
    assert req.headers["aos-delivery-attempt"] == "3"
    assert verify_signature(SECRET, req.headers["aos-signature"], req.body)


@pytest.mark.parametrize(("status", "code", "final"), [
    (500, "HTTP_SERVER_ERROR", False), (503, "HTTP_SERVICE_UNAVAILABLE", False),
    (404, "HTTP_NOT_FOUND", False), (401, "HTTP_UNAUTHORIZED", False), (410, "HTTP_CLIENT_ERROR", True),
])
def test_a_non_2xx_answer_is_a_failed_attempt_and_only_410_gone_is_final(aos_env, status, code, final):
    with serve_http({"POST /hook": Reply(status, body="receiver says no")}) as srv:
        result = deliver(_req(srv.url("/hook")), timeout_s=5)
    assert not result.ok and result.code == code and result.status == status and result.final is final
    assert "receiver says no" in result.message


def test_retry_after_of_a_429_is_reported(aos_env):
    with serve_http({"POST /hook": Reply(429, headers={"Retry-After": "7"})}) as srv:
        result = deliver(_req(srv.url("/hook")), timeout_s=5)
    assert result.code == "RATE_LIMITED" and result.retry_after_s == 7.0 and not result.final


def test_a_redirect_is_not_followed(aos_env):
    with serve_http({"POST /hook": Reply(302, headers={"Location": "/elsewhere"}),
                     "/elsewhere": Reply(200)}) as srv:
        result = deliver(_req(srv.url("/hook")), timeout_s=5)
        paths = [r.path for r in srv.requests]
    assert not result.ok and result.code == "HTTP_PROTOCOL_ERROR" and "redirect" in result.message
    assert paths == ["/hook"]


def test_a_receiver_slower_than_the_timeout_is_a_retryable_timeout(aos_env):
    with serve_http({"POST /hook": Reply(200, delay_s=3)}) as srv:
        t0 = time.monotonic()
        result = deliver(_req(srv.url("/hook")), timeout_s=0.5)
    assert time.monotonic() - t0 < 2.5
    assert not result.ok and result.code == "HTTP_TIMEOUT" and not result.final


def test_a_closed_port_is_a_retryable_connection_error(aos_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = deliver(_req(f"http://127.0.0.1:{port}/hook"), timeout_s=2)
    assert not result.ok and result.code == "HTTP_CONNECT_ERROR" and not result.final


def test_the_ssrf_guard_refuses_a_loopback_receiver_unless_allow_listed(aos_env, settings_env):
    with serve_http({"POST /hook": Reply(200)}) as srv:
        settings_env(AOS_HTTP_ALLOW_HOSTS="example.org")
        refused = deliver(_req(srv.url("/hook")), timeout_s=2)
        settings_env(AOS_HTTP_ALLOW_HOSTS="127.0.0.1")
        allowed = deliver(_req(srv.url("/hook")), timeout_s=2)
        received = len(srv.requests)
    assert not refused.ok and refused.code == "HTTP_SSRF_BLOCKED" and refused.final
    assert allowed.ok and received == 1  # nothing was sent while the guard refused


def test_the_body_is_canonical_and_the_same_for_every_attempt():
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    payload = {"run_id": "abc", "event": "run.succeeded", "data": {"steps": 2, "cost_usd": 0.5}}
    body = webhooks.body_for(9, "run.succeeded", payload, created)
    assert body == webhooks.body_for(9, "run.succeeded", dict(payload), created)
    assert json.loads(body) == {"id": "9", "type": "run.succeeded", "created_at": "2026-01-02T03:04:05+00:00",
                                "data": {"run_id": "abc", "steps": 2, "cost_usd": 0.5}}
    assert b" " not in body  # compact separators, sorted keys: what a receiver hashes is exactly this


# --- the tenant's endpoint ----------------------------------------------------------------------------------


def test_setting_the_url_generates_a_secret_once_and_rotation_replaces_it(tenant):
    ctx, _ = tenant
    with session_scope() as s:
        first = webhooks.set_webhook(s, ctx.tenant_id, "http://127.0.0.1:9/hook")
    with session_scope() as s:
        again = webhooks.set_webhook(s, ctx.tenant_id, "http://127.0.0.1:9/other")
    with session_scope() as s:
        shown = webhooks.get_webhook(s, ctx.tenant_id)
    with session_scope() as s:
        rotated = webhooks.rotate_secret(s, ctx.tenant_id)
    assert first["secret"].startswith("whsec_") and first["secret_set"]
    assert "secret" not in again and again["url"] == "http://127.0.0.1:9/other"
    assert "secret" not in shown and shown["secret_set"] and shown["events"] == ["run.succeeded", "run.failed",
                                                                                 "budget.warning", "run.waiting", "run.recovery"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != first["secret"]
    with session_scope() as s:
        cleared = webhooks.set_webhook(s, ctx.tenant_id, None)
    assert cleared["url"] is None and cleared["secret_set"]


@pytest.mark.parametrize(("url", "code"), [
    ("ftp://127.0.0.1/x", "VALIDATION_ERROR"), ("/relative", "VALIDATION_ERROR"), ("", "VALIDATION_ERROR"),
    ("http://", "VALIDATION_ERROR"), ("http://no-such-host.invalid/hook", "VALIDATION_ERROR"),
    ("http://169.254.169.254/latest", "HTTP_SSRF_BLOCKED"), ("http://10.1.2.3/hook", "HTTP_SSRF_BLOCKED"),
])
def test_a_bad_or_private_url_is_refused_and_nothing_is_stored(tenant, url, code):
    ctx, _ = tenant
    with pytest.raises(AosError) as err, session_scope() as s:
        webhooks.set_webhook(s, ctx.tenant_id, url)
    assert err.value.code == code
    with session_scope() as s:
        assert webhooks.get_webhook(s, ctx.tenant_id)["url"] is None
