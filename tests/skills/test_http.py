"""http.request against real HTTP servers on 127.0.0.1, through invoke_skill (the engine's path)."""

from __future__ import annotations

import ipaddress
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from aos.config import load_settings
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SideEffect, SkillContext, SkillError
from aos.skills.http import SKILLS, HttpRequest
from aos.skills.retry_after import parse_retry_after
from aos.skills.ssrf import AllowList, address_risk, check_host
from tests.support.http_server import RecordedRequest, Reply, serve_http

SKILL = HttpRequest()
ALLOW_LOCAL = {"AOS_HTTP_ALLOW_HOSTS": "127.0.0.1"}


def ctx(env: dict[str, str] | None = None, **kw) -> SkillContext:
    return SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1",
                        settings=load_settings(ALLOW_LOCAL if env is None else env),
                        idempotency_key="r1:s1:1", **kw)


def call(args: dict, context: SkillContext | None = None):
    outcome, raw = invoke_skill(SKILL, args, context or ctx())
    return outcome, raw


def error_code(args: dict, context: SkillContext | None = None) -> str:
    outcome, _ = call(args, context)
    assert outcome.status == "error", outcome.output
    return outcome.error.code


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the happy path -------------------------------------------------------------------------------

def test_get_json_returns_status_headers_and_parsed_body():
    with serve_http({"GET /weather": Reply(json={"temp_c": 21}, headers={"X-Trace": "abc"})}) as srv:
        outcome, raw = call({"url": srv.url("/weather"), "query": {"city": "Paris", "days": 2, "metric": True}})
    assert outcome.status == "ok"
    out = outcome.output
    assert out["status"] == 200
    assert out["json"] == {"temp_c": 21}
    assert out["text"] == '{"temp_c": 21}'
    assert out["headers"]["x-trace"] == "abc"
    assert out["url"].startswith(srv.url("/weather?"))
    assert "elapsed_ms" not in out and outcome.usage.cost_usd == 0
    assert raw == out  # what a golden file records
    assert srv.requests[0].query == {"city": ["Paris"], "days": ["2"], "metric": ["true"]}


def test_skill_declares_external_non_deterministic_with_retry_policy():
    assert [s.ref for s in SKILLS] == ["http.request@1"]
    assert SKILL.side_effect is SideEffect.EXTERNAL and SKILL.deterministic is False
    assert (SKILL.default_retry.max_attempts, SKILL.default_retry.backoff_max_s) == (5, 60)
    assert SKILL.recommended == 2 and SKILL.cost_model.estimate({}).latency_ms == 300


def test_post_sends_json_body_and_the_step_idempotency_key():
    with serve_http({"POST /orders": Reply(status=201, json={"id": 7})}) as srv:
        outcome, _ = call({"method": "POST", "url": srv.url("/orders"), "json": {"sku": "A", "qty": 2}})
    assert outcome.status == "ok" and outcome.output["status"] == 201
    req = srv.requests[0]
    assert req.method == "POST"
    assert req.json() == {"sku": "A", "qty": 2}
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == "r1:s1:1"


def test_caller_set_idempotency_key_is_kept():
    with serve_http({"PUT /x": Reply(json={})}) as srv:
        call({"method": "PUT", "url": srv.url("/x"), "body": "hi",
              "headers": {"idempotency-key": "mine-123"}})
    assert srv.requests[0].headers["idempotency-key"] == "mine-123"
    assert srv.requests[0].body == b"hi"


def test_get_sends_no_idempotency_key():
    with serve_http({"/x": Reply(json={})}) as srv:
        call({"url": srv.url("/x")})
    assert "idempotency-key" not in srv.requests[0].headers


def test_fail_on_status_false_returns_404_as_output():
    with serve_http() as srv:
        outcome, _ = call({"url": srv.url("/missing"), "fail_on_status": False})
    assert outcome.status == "ok"
    assert outcome.output["status"] == 404 and outcome.output["json"]["error"] == "no route"


# --- SSRF guard -----------------------------------------------------------------------------------

def test_loopback_is_refused_without_allow_list_and_nothing_is_sent():
    with serve_http({"/": Reply(json={})}) as srv:
        outcome, _ = call({"url": srv.url("/")}, ctx(env={}))
    assert outcome.error.code == "HTTP_SSRF_BLOCKED"
    assert outcome.error.details["reason"] == "loopback"
    assert srv.requests == []


def test_decimal_spelling_of_loopback_is_refused():
    with serve_http({"/": Reply(json={})}) as srv:
        assert error_code({"url": f"http://2130706433:{srv.port}/"}, ctx(env={})) == "HTTP_SSRF_BLOCKED"
    assert srv.requests == []


def test_redirect_to_another_loopback_address_is_refused_before_connecting():
    with serve_http({"/": Reply(json={"secret": True})}, host="127.0.0.2") as internal:
        with serve_http({"/go": Reply(status=302, headers={"Location": internal.url("/")})}) as srv:
            outcome, _ = call({"url": srv.url("/go")})
    assert outcome.error.code == "HTTP_SSRF_BLOCKED"
    assert outcome.error.details["address"] == "127.0.0.2"
    assert len(srv.requests) == 1 and internal.requests == []


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin"])
def test_redirect_to_private_or_metadata_address_is_refused(target):
    with serve_http({"/go": Reply(status=301, headers={"Location": target})}) as srv:
        t0 = time.monotonic()
        outcome, _ = call({"url": srv.url("/go"), "timeout_s": 5})
    # a connection attempt to these would hang until the timeout: the refusal comes first
    assert outcome.error.code == "HTTP_SSRF_BLOCKED" and time.monotonic() - t0 < 2


@pytest.mark.parametrize("allow", ["127.0.0.1", "169.254.0.0/16,0.0.0.0/0"])
def test_metadata_address_is_refused_by_literal_ip_even_under_wide_allow_list(allow):
    outcome, _ = call({"url": "http://169.254.169.254/latest/meta-data/"}, ctx(env={"AOS_HTTP_ALLOW_HOSTS": allow}))
    assert outcome.error.code == "HTTP_SSRF_BLOCKED"
    assert outcome.error.details["reason"] == "cloud metadata"


def test_metadata_hostname_is_refused_without_resolving():
    assert error_code({"url": "http://metadata.google.internal/computeMetadata/v1/"}) == "HTTP_SSRF_BLOCKED"


# --- capability policy ----------------------------------------------------------------------------

def test_host_outside_capability_http_hosts_is_denied():
    with serve_http({"/": Reply(json={})}) as srv:
        outcome, _ = call({"url": srv.url("/")}, ctx(capabilities={"http_hosts": ["api.example.com", "*.corp.io"]}))
    assert outcome.error.code == "CAPABILITY_DENIED" and srv.requests == []


def test_capability_is_checked_on_every_redirect_hop():
    with serve_http({"/": Reply(json={})}) as other:
        other_url = f"http://localhost:{other.port}/"
        with serve_http({"/go": Reply(status=302, headers={"Location": other_url})}) as srv:
            outcome, _ = call({"url": srv.url("/go")}, ctx(capabilities={"http_hosts": ["127.0.0.1"]}))
    assert outcome.error.code == "CAPABILITY_DENIED"
    assert outcome.error.details["host"] == "localhost" and other.requests == []


# --- redirects ------------------------------------------------------------------------------------

def test_redirect_chain_is_followed_and_303_turns_post_into_get():
    routes = {
        "POST /submit": Reply(status=307, headers={"Location": "/submit2"}),
        "POST /submit2": Reply(status=303, headers={"Location": "/result?id=9"}),
        "GET /result": Reply(json={"done": True}),
    }
    with serve_http(routes) as srv:
        outcome, _ = call({"method": "POST", "url": srv.url("/submit"), "json": {"a": 1},
                           "headers": {"Authorization": "Bearer s3cret"}})
    assert outcome.status == "ok", outcome.error
    assert outcome.output["json"] == {"done": True}
    assert outcome.output["url"] == srv.url("/result?id=9")
    seen = [(r.method, r.path, r.body) for r in srv.requests]
    assert seen == [("POST", "/submit", b'{"a":1}'), ("POST", "/submit2", b'{"a":1}'), ("GET", "/result", b"")]
    assert "content-type" not in srv.requests[2].headers
    assert srv.requests[2].headers["authorization"] == "Bearer s3cret"  # same origin keeps it


def test_credentials_are_dropped_when_a_redirect_changes_origin():
    with serve_http({"/": Reply(json={})}) as other:
        with serve_http({"/go": Reply(status=302, headers={"Location": other.url("/")})}) as srv:
            call({"url": srv.url("/go"), "headers": {"Authorization": "Bearer s3cret", "X-Keep": "1"}})
    assert "authorization" not in other.requests[0].headers
    assert other.requests[0].headers["x-keep"] == "1"


def test_follow_redirects_false_returns_the_redirect():
    with serve_http({"/go": Reply(status=302, headers={"Location": "/elsewhere"})}) as srv:
        outcome, _ = call({"url": srv.url("/go"), "follow_redirects": False})
    assert outcome.output["status"] == 302 and outcome.output["headers"]["location"] == "/elsewhere"
    assert len(srv.requests) == 1


def test_too_many_redirects_fails():
    def loop(req: RecordedRequest) -> Reply:
        n = int(req.query.get("n", ["0"])[0])
        return Reply(status=302, headers={"Location": f"/loop?n={n + 1}"})

    with serve_http({"/loop": loop}) as srv:
        outcome, _ = call({"url": srv.url("/loop")}, ctx(env={**ALLOW_LOCAL, "AOS_HTTP_MAX_REDIRECTS": "3"}))
    assert outcome.error.code == "HTTP_TOO_MANY_REDIRECTS"
    assert len(srv.requests) == 4  # the request and three redirects followed


def test_redirect_to_non_http_scheme_is_refused():
    with serve_http({"/go": Reply(status=302, headers={"Location": "file:///etc/passwd"})}) as srv:
        assert error_code({"url": srv.url("/go")}) == "HTTP_INVALID_URL"


# --- response size cap ----------------------------------------------------------------------------

SMALL_CAP = {**ALLOW_LOCAL, "AOS_HTTP_MAX_RESPONSE_BYTES": "1000"}


def test_announced_content_length_over_the_cap_fails_before_reading():
    # announces more than it sends: reading the body would end in a protocol error instead
    reply = Reply(body=b"x" * 10, headers={"Content-Length": "100000"})
    with serve_http({"/big": reply}) as srv:
        outcome, _ = call({"url": srv.url("/big")}, ctx(env=SMALL_CAP))
    assert outcome.error.code == "HTTP_RESPONSE_TOO_LARGE"
    assert outcome.error.details["content_length"] == 100000


def test_chunked_body_over_the_cap_is_cut_off():
    with serve_http({"/big": Reply(body=b"y" * 5000, chunked=True, chunk_size=300)}) as srv:
        outcome, _ = call({"url": srv.url("/big")}, ctx(env=SMALL_CAP))
    assert outcome.error.code == "HTTP_RESPONSE_TOO_LARGE"
    assert outcome.error.details["content_length"] is None


def test_body_at_the_cap_is_read():
    with serve_http({"/ok": Reply(body=b"z" * 1000, chunked=True)}) as srv:
        outcome, _ = call({"url": srv.url("/ok")}, ctx(env=SMALL_CAP))
    assert outcome.status == "ok" and len(outcome.output["text"]) == 1000


# --- status codes and Retry-After -----------------------------------------------------------------

def test_429_with_retry_after_seconds_is_rate_limited_with_the_hint():
    with serve_http({"/": Reply(status=429, json={}, headers={"Retry-After": "7"})}) as srv:
        outcome, _ = call({"url": srv.url("/")})
    assert outcome.error.code == "RATE_LIMITED"
    assert outcome.error.details["retry_after_s"] == 7.0 and outcome.error.retryable


def test_503_with_retry_after_date_carries_the_hint():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with serve_http({"/": Reply(status=503, body="busy", headers={"Retry-After": when})}) as srv:
        outcome, _ = call({"url": srv.url("/")})
    assert outcome.error.code == "HTTP_SERVICE_UNAVAILABLE"
    assert 100 < outcome.error.details["retry_after_s"] <= 120


@pytest.mark.parametrize("status,code", [
    (400, "HTTP_BAD_REQUEST"), (401, "HTTP_UNAUTHORIZED"), (403, "HTTP_FORBIDDEN"), (404, "HTTP_NOT_FOUND"),
    (409, "HTTP_CONFLICT"), (418, "HTTP_CLIENT_ERROR"), (422, "HTTP_UNPROCESSABLE"), (500, "HTTP_SERVER_ERROR"),
    (502, "HTTP_BAD_GATEWAY"), (504, "HTTP_GATEWAY_TIMEOUT"), (599, "HTTP_SERVER_ERROR"),
])
def test_error_status_maps_to_its_code(status, code):
    with serve_http({"/": Reply(status=status, body="nope")}) as srv:
        outcome, _ = call({"url": srv.url("/")})
    assert outcome.error.code == code
    assert outcome.error.details["status"] == status and outcome.error.details["body_excerpt"] == "nope"


def test_authorization_header_never_appears_in_errors():
    with serve_http({"/": Reply(status=401, body="who are you")}) as srv:
        outcome, _ = call({"url": srv.url("/?api_key=k9"), "headers": {"Authorization": "Bearer s3cret-tok"}})
    assert outcome.error.code == "HTTP_UNAUTHORIZED"
    text = repr(outcome.error)
    assert "s3cret-tok" not in text and "k9" not in text


def test_expect_json_fails_on_a_non_json_body():
    with serve_http({"/": Reply(body="<html>hi</html>")}) as srv:
        outcome, _ = call({"url": srv.url("/"), "expect_json": True})
        plain, _ = call({"url": srv.url("/")})
    assert outcome.error.code == "HTTP_PROTOCOL_ERROR"
    assert plain.output["json"] is None and plain.output["text"] == "<html>hi</html>"


# --- transport failures ---------------------------------------------------------------------------

def test_server_slower_than_timeout_is_http_timeout():
    with serve_http({"/slow": Reply(json={}, delay_s=3)}) as srv:
        t0 = time.monotonic()
        outcome, _ = call({"url": srv.url("/slow"), "timeout_s": 0.3})
    assert outcome.error.code == "HTTP_TIMEOUT" and time.monotonic() - t0 < 2


def test_closed_port_is_connect_error():
    assert error_code({"url": f"http://127.0.0.1:{closed_port()}/"}) == "HTTP_CONNECT_ERROR"


def test_https_to_a_plain_http_server_is_tls_error():
    with serve_http({"/": Reply(json={})}) as srv:
        assert error_code({"url": f"https://127.0.0.1:{srv.port}/"}) == "HTTP_TLS_ERROR"


def test_unresolvable_host_is_dns_error():
    assert error_code({"url": "http://no-such-host.invalid/"}) == "HTTP_DNS_ERROR"


# --- invalid args ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args,code", [
    ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "SKILL_ARGS_INVALID"),
    ({"url": "http://127.0.0.1/", "method": "FETCH"}, "SKILL_ARGS_INVALID"),
    ({"url": "http://127.0.0.1/", "extra": 1}, "SKILL_ARGS_INVALID"),
    ({"url": "http://127.0.0.1/", "timeout_s": 0}, "SKILL_ARGS_INVALID"),
    ({"url": "http://127.0.0.1/", "headers": {"X-Bad": "a\r\nInjected: 1"}}, "SKILL_ARGS_INVALID"),
    ({"url": "http://127.0.0.1/", "headers": {"Host": "evil"}}, "SKILL_ARGS_INVALID"),
    ({"url": "ftp://example.com/file"}, "HTTP_INVALID_URL"),
    ({"url": "http:///nohost"}, "HTTP_INVALID_URL"),
])
def test_invalid_args_are_refused(args, code):
    assert error_code(args) == code


# --- the guard's address classification (unit) ---------------------------------------------------

@pytest.mark.parametrize("addr,reason", [
    ("8.8.8.8", None), ("2606:4700:4700::1111", None),
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"),
    ("172.16.5.5", "private"), ("169.254.1.1", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "private"), ("100.64.0.1", "not globally routable"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
    ("::1", "loopback"), ("fe80::1", "link-local"), ("fc00::1", "private"), ("ff02::1", "multicast"),
    ("::", "unspecified"),
])
def test_address_classification(addr, reason):
    assert address_risk(ipaddress.ip_address(addr)) == reason


@pytest.mark.parametrize("addr,inner", [
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a00:1", "private"),
])
def test_ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_address(addr, inner):
    assert address_risk(ipaddress.ip_address(addr)).startswith(inner)


def test_ipv4_mapped_public_address_is_allowed():
    assert address_risk(ipaddress.ip_address("::ffff:8.8.8.8")) is None


def fake_resolver(*addrs: str):
    def resolve(host, port, type=0):  # noqa: A002 — getaddrinfo's keyword
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addrs]
    return resolve


def test_cidr_allow_list_entry_admits_addresses_inside_it_only():
    allow = AllowList.parse(["10.0.0.0/8", "fd12::/16"])
    assert check_host("svc.internal", 80, allow, fake_resolver("10.9.8.7", "fd12::5"))
    with pytest.raises(SkillError) as err:
        check_host("svc.internal", 80, allow, fake_resolver("10.9.8.7", "192.168.1.1"))
    assert err.value.code == "HTTP_SSRF_BLOCKED" and err.value.details["address"] == "192.168.1.1"


def test_any_blocked_address_among_several_blocks_the_host():
    with pytest.raises(SkillError) as err:
        check_host("mixed.example", 443, AllowList(), fake_resolver("93.184.216.34", "127.0.0.1"))
    assert err.value.details["reason"] == "loopback"


def test_allow_listed_hostname_and_ipv4_entry_cover_mapped_address():
    assert check_host("db.local", 5432, AllowList.parse(["*.local"]), fake_resolver("10.0.0.5"))
    assert check_host("x", 80, AllowList.parse(["127.0.0.1"]), fake_resolver("::ffff:127.0.0.1"))


def test_allow_listed_hostname_does_not_unlock_metadata():
    with pytest.raises(SkillError):
        check_host("evil.local", 80, AllowList.parse(["*.local"]), fake_resolver("169.254.169.254"))


def test_parse_retry_after_forms():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now) == 60.0
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_hostname_url_connects_to_the_vetted_address_with_its_own_host_header():
    with serve_http({"/": Reply(json={"ok": 1})}) as srv:
        outcome, _ = call({"url": f"http://localhost:{srv.port}/"}, ctx(env={"AOS_HTTP_ALLOW_HOSTS": "localhost"}))
    assert outcome.status == "ok", outcome.error
    assert srv.requests[0].headers["host"] == f"localhost:{srv.port}"
    assert outcome.output["url"] == f"http://localhost:{srv.port}/"
