"""The failure catalog: its shape, its generated page, and how it classifies real failures.

Exceptions are real instances of the libraries AOS uses; where a library can be
made to raise by itself (httpx, the Anthropic and OpenAI SDKs, psycopg), it is
driven against a local server so the test sees exactly what production sees.
"""

from __future__ import annotations

import builtins
import http
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jmespath
import jmespath.exceptions
import openai
import psycopg
import psycopg.errors
import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeoutError
from sqlalchemy.engine import make_url

from aos.config import load_settings
from aos.runtime.catalog import (
    CATALOG,
    CatalogEntry,
    Category,
    FailureCatalog,
    MatchRule,
    RecoveryMode,
)
from aos.runtime.catalog_doc import REGENERATE_COMMAND, render_markdown
from aos.runtime.invoke import invoke_skill
from aos.skills.base import Skill, SkillContext, SkillError, SkillResult

REPO = Path(__file__).resolve().parents[2]

# The codes every part of AOS may use (the shared list of the project); the catalog has these and more.
SHARED_CODES = """
BODY_MALFORMED VALIDATION_ERROR NOT_FOUND METHOD_NOT_ALLOWED REQUEST_TOO_LARGE CONFLICT RATE_LIMITED
AUTH_MISSING AUTH_INVALID FORBIDDEN_SCOPE
PLAN_INVALID SKILL_NOT_FOUND REF_UNRESOLVED EXPR_INVALID SKILL_ARGS_INVALID JSON_SCHEMA_MISMATCH
BUDGET_EXCEEDED CAPABILITY_DENIED
STEP_TIMEOUT WORKER_LOST RUN_CANCELLED SKILL_CRASHED INTERNAL_ERROR SERVICE_UNAVAILABLE
HTTP_INVALID_URL HTTP_CONNECT_ERROR HTTP_DNS_ERROR HTTP_TLS_ERROR HTTP_TIMEOUT HTTP_SSRF_BLOCKED
HTTP_TOO_MANY_REDIRECTS HTTP_RESPONSE_TOO_LARGE HTTP_BAD_REQUEST HTTP_UNAUTHORIZED HTTP_FORBIDDEN
HTTP_NOT_FOUND HTTP_CONFLICT HTTP_UNPROCESSABLE HTTP_CLIENT_ERROR HTTP_SERVER_ERROR HTTP_BAD_GATEWAY
HTTP_SERVICE_UNAVAILABLE HTTP_GATEWAY_TIMEOUT HTTP_PROTOCOL_ERROR
LLM_NOT_CONFIGURED LLM_AUTH_FAILED LLM_RATE_LIMITED LLM_OVERLOADED LLM_CONTEXT_TOO_LONG LLM_INVALID_REQUEST
LLM_MODEL_NOT_FOUND LLM_CONTENT_FILTERED LLM_PROVIDER_ERROR LLM_TIMEOUT LLM_CONNECTION_ERROR
LLM_OUTPUT_INVALID_JSON
ICS_PARSE_ERROR TIMEZONE_UNKNOWN CALENDAR_RANGE_INVALID
PG_CONNECTION_UNKNOWN PG_CONNECTION_FAILED PG_QUERY_TIMEOUT PG_READ_ONLY_VIOLATION PG_SYNTAX_ERROR
PG_QUERY_ERROR
TENANT_NOT_FOUND AGENT_NOT_FOUND WORKFLOW_NOT_FOUND RUN_NOT_FOUND RUN_NOT_RESUMABLE RUN_ALREADY_FINISHED
STEP_NOT_FOUND DEAD_LETTER_NOT_FOUND GOLDEN_SIGNATURE_INVALID GOLDEN_HASH_MISMATCH GOLDEN_DIVERGED
GOLDEN_FORMAT_INVALID GOLDEN_SECRET_MISSING QUOTA_EXCEEDED DB_UNAVAILABLE BROKER_UNAVAILABLE DB_CONFLICT
LEASE_HELD CONFIG_INVALID SCHEDULE_INVALID SIGNAL_TIMEOUT CIRCUIT_OPEN OUT_OF_MEMORY RESOURCE_EXHAUSTED
PERMISSION_DENIED ENCODING_ERROR DATA_TYPE_ERROR DATA_KEY_MISSING ARITHMETIC_ERROR NOT_IMPLEMENTED
""".split()

# Statuses the catalog seed gave; other parts of AOS already rely on them.
SEED_STATUSES = {
    "BODY_MALFORMED": 400, "VALIDATION_ERROR": 422, "NOT_FOUND": 404, "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TOO_LARGE": 413, "CONFLICT": 409, "RATE_LIMITED": 429, "AUTH_MISSING": 401, "AUTH_INVALID": 401,
    "FORBIDDEN_SCOPE": 403, "PLAN_INVALID": 422, "SKILL_NOT_FOUND": 422, "REF_UNRESOLVED": 422,
    "EXPR_INVALID": 422, "SKILL_ARGS_INVALID": 422, "BUDGET_EXCEEDED": 402, "CAPABILITY_DENIED": 403,
    "STEP_TIMEOUT": 504, "WORKER_LOST": 503, "RUN_CANCELLED": 409, "SERVICE_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500, "SKILL_CRASHED": 500,
}


def code_of(error: BaseException) -> str:
    return CATALOG.match(error).code


# --------------------------------------------------------------------------- shape


def _entry(code: str, **rules: Any) -> CatalogEntry:
    return CatalogEntry(code, Category.SYSTEM, False, RecoveryMode.ESCALATE, 500, f"{code} happened.",
                        (MatchRule(**rules),) if rules else ())


def test_duplicate_code_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate catalog code DUP"):
        FailureCatalog([_entry("DUP"), _entry("DUP")], fallback="DUP")


def test_catalog_has_at_least_sixty_codes() -> None:
    assert len(CATALOG) >= 60
    assert len(set(CATALOG.codes())) == len(CATALOG)


def test_every_code_is_upper_snake_case() -> None:
    bad = [c for c in CATALOG.codes() if not re.fullmatch(r"[A-Z][A-Z0-9_]+", c)]
    assert bad == []


def test_every_entry_has_a_description_and_an_error_http_status() -> None:
    for entry in CATALOG:
        assert entry.description.strip(), entry.code
        assert entry.description.rstrip().endswith("."), entry.code
        assert 400 <= entry.http_status <= 599, entry.code
        assert entry.http_status in {s.value for s in http.HTTPStatus}, entry.code


def test_every_shared_code_exists() -> None:
    missing = [c for c in SHARED_CODES if c not in CATALOG]
    assert missing == []


def test_seed_codes_keep_their_http_status() -> None:
    assert {c: CATALOG.get(c).http_status for c in SEED_STATUSES} == SEED_STATUSES


def test_retryable_flags_agree_with_recovery_modes() -> None:
    for entry in CATALOG:
        if entry.recovery in (RecoveryMode.RETRY, RecoveryMode.RETRY_AFTER):
            assert entry.retryable, f"{entry.code} is {entry.recovery} but not retryable"
        if entry.recovery is RecoveryMode.ABORT:
            assert not entry.retryable, f"{entry.code} is ABORT but retryable"


def test_no_code_skips_by_default() -> None:
    assert [e.code for e in CATALOG if e.recovery is RecoveryMode.SKIP] == []


def test_unknown_code_lookup_raises_key_error() -> None:
    with pytest.raises(KeyError):
        CATALOG.get("NO_SUCH_CODE")


# --------------------------------------------------------------------------- generated page


def test_docs_errors_md_matches_the_catalog_byte_for_byte() -> None:
    page = (REPO / "docs" / "errors.md").read_bytes()
    assert page == render_markdown().encode("utf-8"), (
        f"docs/errors.md is out of date with aos/runtime/catalog.py; regenerate it with "
        f"`aos docs generate` or `{REGENERATE_COMMAND}`"
    )


def test_rendered_page_lists_every_code_with_its_status_and_recovery() -> None:
    page = render_markdown()
    for entry in CATALOG:
        row = f"| `{entry.code}` | {entry.http_status} | {'yes' if entry.retryable else 'no'} | `{entry.recovery}` |"
        assert row in page, entry.code
    for mode in RecoveryMode:
        assert f"| `{mode}` |" in page


# --------------------------------------------------------------------------- ranking


def test_nearest_class_in_the_mro_wins_whatever_the_rule_order() -> None:
    class Base(Exception):
        pass

    class Child(Base):
        pass

    for entries in ([_entry("BASE", exception="Base"), _entry("CHILD", exception="Child")],
                    [_entry("CHILD", exception="Child"), _entry("BASE", exception="Base")]):
        catalog = FailureCatalog([*entries, _entry("FALLBACK")], fallback="FALLBACK")
        assert catalog.match(Child()).code == "CHILD"
        assert catalog.match(Base()).code == "BASE"


def test_subclass_rules_beat_their_base_class_rules() -> None:
    # each error's base class has a rule of its own that must lose
    assert code_of(httpx.UnsupportedProtocol("ftp")) == "HTTP_INVALID_URL"      # base: TransportError
    assert code_of(psycopg.errors.QueryCanceled("cancel")) == "PG_QUERY_TIMEOUT"  # base: OperationalError
    assert code_of(ssl.SSLError(1, "bad")) == "HTTP_TLS_ERROR"                  # base: OSError
    assert code_of(ConnectionRefusedError(111, "refused")) == "NETWORK_ERROR"   # base: OSError
    assert code_of(PermissionError(13, "Permission denied")) == "PERMISSION_DENIED"


def test_a_rule_with_a_message_beats_the_bare_class_rule() -> None:
    assert code_of(httpx.ConnectError("[Errno -2] Name or service not known")) == "HTTP_DNS_ERROR"
    assert code_of(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")) \
        == "HTTP_TLS_ERROR"
    assert code_of(httpx.ConnectError("[Errno 111] Connection refused")) == "HTTP_CONNECT_ERROR"


# --------------------------------------------------------------------------- constructed exceptions

REQ = httpx.Request("POST", "https://api.example.com/v1/messages")


def _status_error(cls: type, status: int, message: str) -> BaseException:
    return cls(message, response=httpx.Response(status, request=REQ), body=None)


@pytest.mark.parametrize(("error", "code"), [
    (httpx.ConnectTimeout("timed out"), "HTTP_TIMEOUT"),
    (httpx.ReadTimeout("timed out"), "HTTP_TIMEOUT"),
    (httpx.WriteTimeout("timed out"), "HTTP_TIMEOUT"),
    (httpx.PoolTimeout("timed out"), "HTTP_TIMEOUT"),
    (httpx.ConnectError("[Errno 111] Connection refused"), "HTTP_CONNECT_ERROR"),
    (httpx.ReadError("connection reset"), "HTTP_CONNECT_ERROR"),
    (httpx.TooManyRedirects("Exceeded maximum allowed redirects."), "HTTP_TOO_MANY_REDIRECTS"),
    (httpx.RemoteProtocolError("illegal status line"), "HTTP_PROTOCOL_ERROR"),
    (httpx.LocalProtocolError("bad header"), "HTTP_PROTOCOL_ERROR"),
    (httpx.InvalidURL("Invalid port"), "HTTP_INVALID_URL"),
    (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."), "HTTP_INVALID_URL"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "HTTP_TLS_ERROR"),
    (socket.gaierror(-2, "Name or service not known"), "HTTP_DNS_ERROR"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_http_transport_errors_are_classified(error: BaseException, code: str) -> None:
    assert code_of(error) == code


@pytest.mark.parametrize("sdk", [anthropic, openai], ids=["anthropic", "openai"])
@pytest.mark.parametrize(("cls_name", "status", "message", "code"), [
    ("RateLimitError", 429, "rate limited", "LLM_RATE_LIMITED"),
    ("AuthenticationError", 401, "invalid x-api-key", "LLM_AUTH_FAILED"),
    ("PermissionDeniedError", 403, "no access", "LLM_AUTH_FAILED"),
    ("NotFoundError", 404, "model: claude-nope", "LLM_MODEL_NOT_FOUND"),
    ("BadRequestError", 400, "messages: roles must alternate", "LLM_INVALID_REQUEST"),
    ("BadRequestError", 400, "prompt is too long: 215000 tokens > 200000 maximum", "LLM_CONTEXT_TOO_LONG"),
    ("BadRequestError", 400, "This model's maximum context length is 8192 tokens", "LLM_CONTEXT_TOO_LONG"),
    ("BadRequestError", 400, "max_tokens: 100000 > 64000", "LLM_CONTEXT_TOO_LONG"),
    ("InternalServerError", 500, "Internal server error", "LLM_PROVIDER_ERROR"),
    ("InternalServerError", 529, "Error code: 529", "LLM_OVERLOADED"),
    ("InternalServerError", 500, "{'type': 'overloaded_error', 'message': 'Overloaded'}", "LLM_OVERLOADED"),
    ("APIStatusError", 418, "teapot", "LLM_PROVIDER_ERROR"),
])
def test_llm_sdk_status_errors_are_classified(sdk: Any, cls_name: str, status: int, message: str,
                                              code: str) -> None:
    assert code_of(_status_error(getattr(sdk, cls_name), status, message)) == code


@pytest.mark.parametrize("sdk", [anthropic, openai], ids=["anthropic", "openai"])
def test_llm_sdk_connection_errors_are_classified(sdk: Any) -> None:
    assert code_of(sdk.APITimeoutError(request=REQ)) == "LLM_TIMEOUT"
    assert code_of(sdk.APIConnectionError(request=REQ)) == "LLM_CONNECTION_ERROR"


def test_anthropic_overloaded_error_is_llm_overloaded() -> None:
    assert code_of(_status_error(anthropic.OverloadedError, 529, "Overloaded")) == "LLM_OVERLOADED"


def test_openai_content_filter_is_a_fallback() -> None:
    err = _status_error(openai.BadRequestError, 400, "Your request was rejected as a result of our safety system")
    entry = CATALOG.match(err)
    assert (entry.code, entry.recovery) == ("LLM_CONTENT_FILTERED", RecoveryMode.FALLBACK)
    assert CATALOG.get("LLM_MODEL_NOT_FOUND").recovery is RecoveryMode.FALLBACK


@pytest.mark.parametrize(("error", "code"), [
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), "PG_QUERY_TIMEOUT"),
    (psycopg.errors.ReadOnlySqlTransaction("cannot execute CREATE TABLE in a read-only transaction"),
     "PG_READ_ONLY_VIOLATION"),
    (psycopg.errors.SyntaxError('syntax error at or near "SELEC"'), "PG_SYNTAX_ERROR"),
    (psycopg.OperationalError("connection refused"), "PG_CONNECTION_FAILED"),
    (psycopg.errors.UndefinedTable('relation "nope" does not exist'), "PG_QUERY_ERROR"),
    (psycopg.errors.SerializationFailure("could not serialize access"), "DB_CONFLICT"),
    (psycopg.InterfaceError("the connection is closed"), "PG_QUERY_ERROR"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_psycopg_errors_are_classified(error: BaseException, code: str) -> None:
    assert code_of(error) == code


def test_python_syntax_error_is_not_a_postgres_syntax_error() -> None:
    assert code_of(SyntaxError("invalid syntax")) == "SKILL_CRASHED"


@pytest.mark.parametrize("expr", ["foo[", "a.`b", "&&", "foo.[bar"])
def test_jmespath_errors_are_expr_invalid(expr: str) -> None:
    with pytest.raises(jmespath.exceptions.JMESPathError) as caught:
        jmespath.compile(expr)
    assert code_of(caught.value) == "EXPR_INVALID"


@pytest.mark.parametrize(("error", "code"), [
    (SoftTimeLimitExceeded(), "STEP_TIMEOUT"),
    (CeleryTimeoutError("result not ready"), "STEP_TIMEOUT"),
    (TimeoutError("timed out"), "STEP_TIMEOUT"),
    (ConnectionResetError(104, "Connection reset by peer"), "NETWORK_ERROR"),
    (BrokenPipeError(32, "Broken pipe"), "NETWORK_ERROR"),
    (OSError(28, "No space left on device"), "RESOURCE_EXHAUSTED"),
    (OSError(24, "Too many open files"), "RESOURCE_EXHAUSTED"),
    (OSError(5, "Input/output error"), "IO_ERROR"),
    (FileNotFoundError(2, "No such file or directory"), "FILE_NOT_FOUND"),
    (PermissionError(13, "Permission denied"), "PERMISSION_DENIED"),
    (MemoryError(), "OUT_OF_MEMORY"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "ENCODING_ERROR"),
    (UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range"), "ENCODING_ERROR"),
    (TypeError("unsupported operand type(s) for +: 'int' and 'str'"), "DATA_TYPE_ERROR"),
    (KeyError("temp_c"), "DATA_KEY_MISSING"),
    (IndexError("list index out of range"), "DATA_KEY_MISSING"),
    (ZeroDivisionError("division by zero"), "ARITHMETIC_ERROR"),
    (OverflowError("math range error"), "ARITHMETIC_ERROR"),
    (NotImplementedError("streaming"), "NOT_IMPLEMENTED"),
    (json.JSONDecodeError("Expecting value", "<html>", 0), "JSON_DECODE_ERROR"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_python_and_celery_errors_are_classified(error: BaseException, code: str) -> None:
    assert code_of(error) == code


def test_zoneinfo_miss_is_timezone_unknown_not_a_missing_key() -> None:
    import zoneinfo

    with pytest.raises(zoneinfo.ZoneInfoNotFoundError) as caught:
        zoneinfo.ZoneInfo("Mars/Olympus_Mons")
    assert code_of(caught.value) == "TIMEZONE_UNKNOWN"


def test_bad_cron_expression_is_schedule_invalid() -> None:
    from croniter import croniter

    with pytest.raises(Exception) as caught:
        croniter("61 * * * *")
    assert code_of(caught.value) == "SCHEDULE_INVALID"


def test_unexpected_exception_is_skill_crashed() -> None:
    class WeirdPluginFailure(Exception):
        pass

    entry = CATALOG.match(WeirdPluginFailure("boom"))
    assert entry.code == "SKILL_CRASHED"
    assert entry is CATALOG.fallback


def test_error_naming_its_own_catalog_code_keeps_it() -> None:
    class SkillErrorLike(Exception):
        code = "LLM_OVERLOADED"

    assert code_of(SkillErrorLike("provider says no")) == "LLM_OVERLOADED"
    assert code_of(SkillError("HTTP_SSRF_BLOCKED", "private address")) == "HTTP_SSRF_BLOCKED"


def test_error_with_a_foreign_code_attribute_is_classified_by_its_class() -> None:
    class LibraryError(KeyError):
        code = "e3q8"  # e.g. SQLAlchemy's documentation codes

    assert code_of(LibraryError("x")) == "DATA_KEY_MISSING"


def _builtin_exceptions() -> Iterator[BaseException]:
    for value in vars(builtins).values():
        if isinstance(value, type) and issubclass(value, BaseException):
            try:
                yield value("something failed")
            except TypeError:
                continue


def test_no_match_ever_returns_a_code_outside_the_catalog() -> None:
    errors = list(_builtin_exceptions())
    assert len(errors) > 40
    for error in errors:
        assert CATALOG.match(error).code in CATALOG, type(error).__name__
    for status in range(100, 600):
        assert CATALOG.match(http_status=status).code in CATALOG, status
    assert CATALOG.match().code == "SKILL_CRASHED"


# --------------------------------------------------------------------------- HTTP statuses


@pytest.mark.parametrize(("status", "code"), [
    (400, "HTTP_BAD_REQUEST"), (401, "HTTP_UNAUTHORIZED"), (403, "HTTP_FORBIDDEN"), (404, "HTTP_NOT_FOUND"),
    (409, "HTTP_CONFLICT"), (422, "HTTP_UNPROCESSABLE"), (429, "RATE_LIMITED"), (500, "HTTP_SERVER_ERROR"),
    (502, "HTTP_BAD_GATEWAY"), (503, "HTTP_SERVICE_UNAVAILABLE"), (504, "HTTP_GATEWAY_TIMEOUT"),
    (418, "HTTP_CLIENT_ERROR"), (451, "HTTP_CLIENT_ERROR"), (599, "HTTP_SERVER_ERROR"), (507, "HTTP_SERVER_ERROR"),
])
def test_upstream_http_statuses_are_classified(status: int, code: str) -> None:
    assert CATALOG.for_http_status(status).code == code
    assert CATALOG.match(http_status=status).code == code
    response = httpx.Response(status, request=httpx.Request("GET", "https://api.example.com/x"))
    error = httpx.HTTPStatusError("upstream error", request=response.request, response=response)
    assert code_of(error) == code


def test_for_http_status_refuses_a_success_status() -> None:
    with pytest.raises(ValueError, match="not an error status"):
        CATALOG.for_http_status(200)


def test_upstream_503_honours_retry_after_and_429_is_rate_limited() -> None:
    assert CATALOG.for_http_status(503).recovery is RecoveryMode.RETRY_AFTER
    assert CATALOG.for_http_status(429).recovery is RecoveryMode.RETRY_AFTER
    assert not CATALOG.for_http_status(418).retryable
    assert CATALOG.for_http_status(599).retryable


# --------------------------------------------------------------------------- real failures from a local server

ANTHROPIC_ERRORS: dict[str, tuple[int, str, str]] = {
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "rate": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "too-long": (400, "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"),
    "bad": (400, "invalid_request_error", "messages: roles must alternate between user and assistant"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "model": (404, "not_found_error", "model: claude-nope"),
    "server": (500, "api_error", "Internal server error"),
}
OPENAI_ERRORS: dict[str, tuple[int, str, str]] = {
    "oai-context": (400, "context_length_exceeded",
                    "This model's maximum context length is 8192 tokens. However, your messages resulted "
                    "in 9000 tokens."),
    "oai-filter": (400, "content_policy_violation",
                   "Your request was rejected as a result of our safety system."),
    "oai-rate": (429, "rate_limit_exceeded", "Rate limit reached for requests"),
    "oai-server": (500, "server_error", "The server had an error while processing your request."),
}


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._route()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        first = self.path.strip("/").split("/")[0]
        if first == "loop":
            self._send(302, b"", {"Location": "/loop"})
        elif first == "slow":
            time.sleep(1.0)
            try:
                self._send(200, b"{}")
            except OSError:
                pass  # the client timed out and hung up, which is the point
        elif first == "garbage":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
        elif first in ANTHROPIC_ERRORS:
            status, kind, message = ANTHROPIC_ERRORS[first]
            body = {"type": "error", "error": {"type": kind, "message": message}}
            self._send(status, json.dumps(body).encode(), {"retry-after": "1"})
        elif first in OPENAI_ERRORS:
            status, code, message = OPENAI_ERRORS[first]
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
            self._send(status, json.dumps(body).encode())
        else:
            self._send(404, b"{}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raised_by(call: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_real_httpx_failures_from_a_local_server(upstream: str, closed_port: int) -> None:
    with httpx.Client(timeout=5, trust_env=False, follow_redirects=True, max_redirects=3) as client:
        assert code_of(_raised_by(lambda: client.get(f"http://{upstream}/loop"))) == "HTTP_TOO_MANY_REDIRECTS"
        assert code_of(_raised_by(lambda: client.get(f"http://{upstream}/garbage"))) == "HTTP_PROTOCOL_ERROR"
        assert code_of(_raised_by(lambda: client.get(f"http://{upstream}/slow", timeout=0.1))) == "HTTP_TIMEOUT"
        assert code_of(_raised_by(lambda: client.get(f"https://{upstream}/"))) == "HTTP_TLS_ERROR"
        assert code_of(_raised_by(lambda: client.get(f"http://127.0.0.1:{closed_port}/"))) \
            == "HTTP_CONNECT_ERROR"
        assert code_of(_raised_by(lambda: client.get("ftp://127.0.0.1/file"))) == "HTTP_INVALID_URL"
        assert code_of(_raised_by(lambda: client.get("http://127.0.0.1:abc/"))) == "HTTP_INVALID_URL"


@pytest.mark.parametrize(("route", "code"), [
    ("overloaded", "LLM_OVERLOADED"), ("rate", "LLM_RATE_LIMITED"), ("too-long", "LLM_CONTEXT_TOO_LONG"),
    ("bad", "LLM_INVALID_REQUEST"), ("auth", "LLM_AUTH_FAILED"), ("model", "LLM_MODEL_NOT_FOUND"),
    ("server", "LLM_PROVIDER_ERROR"), ("slow", "LLM_TIMEOUT"),
])
def test_real_anthropic_sdk_failures_from_a_local_server(upstream: str, route: str, code: str) -> None:
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=f"http://{upstream}/{route}",
                                 max_retries=0, timeout=0.5)
    error = _raised_by(lambda: client.messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]))
    assert isinstance(error, anthropic.AnthropicError)
    assert code_of(error) == code


def test_anthropic_sdk_that_cannot_connect_is_a_connection_error(closed_port: int) -> None:
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=f"http://127.0.0.1:{closed_port}",
                                 max_retries=0, timeout=2)
    error = _raised_by(lambda: client.messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]))
    assert code_of(error) == "LLM_CONNECTION_ERROR"


@pytest.mark.parametrize(("route", "code"), [
    ("oai-context", "LLM_CONTEXT_TOO_LONG"), ("oai-filter", "LLM_CONTENT_FILTERED"),
    ("oai-rate", "LLM_RATE_LIMITED"), ("oai-server", "LLM_PROVIDER_ERROR"),
])
def test_real_openai_sdk_failures_from_a_local_server(upstream: str, route: str, code: str) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=f"http://{upstream}/{route}", max_retries=0, timeout=2)
    error = _raised_by(lambda: client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]))
    assert isinstance(error, openai.OpenAIError)
    assert code_of(error) == code


def test_psycopg_that_cannot_connect_is_pg_connection_failed(closed_port: int) -> None:
    error = _raised_by(lambda: psycopg.connect(f"host=127.0.0.1 port={closed_port} connect_timeout=2"))
    assert code_of(error) == "PG_CONNECTION_FAILED"


def test_real_postgres_errors_are_classified(pg_url: str) -> None:
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    cases = [
        ("SET statement_timeout = 50", "SELECT pg_sleep(2)", "PG_QUERY_TIMEOUT"),
        ("SET default_transaction_read_only = on", "CREATE TABLE t (x int)", "PG_READ_ONLY_VIOLATION"),
        (None, "SELEC 1", "PG_SYNTAX_ERROR"),
        (None, "SELECT * FROM no_such_table", "PG_QUERY_ERROR"),
    ]
    for setup, sql, code in cases:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if setup:
                conn.execute(setup)
            error = _raised_by(lambda sql=sql, conn=conn: conn.execute(sql))
        assert code_of(error) == code, (sql, error)


# --------------------------------------------------------------------------- through invoke_skill


class _Raising(Skill):
    name = "test.raising"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        raise self.error


class _PluginBug(Exception):
    pass


@pytest.mark.parametrize(("error", "code", "retryable"), [
    (ZeroDivisionError("division by zero"), "ARITHMETIC_ERROR", False),
    (httpx.ReadTimeout("timed out"), "HTTP_TIMEOUT", True),
    (_PluginBug("boom"), "SKILL_CRASHED", False),
    (SkillError("LLM_OVERLOADED", "provider overloaded", retry_after_s=2), "LLM_OVERLOADED", True),
], ids=["arithmetic", "timeout", "unexpected", "skill-error"])
def test_skill_failures_reach_the_outcome_with_their_catalog_code(error: BaseException, code: str,
                                                                   retryable: bool) -> None:
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1", settings=load_settings({}),
                       idempotency_key="r1:s1:1")
    outcome, _raw = invoke_skill(_Raising(error), {}, ctx)
    assert outcome.status == "error"
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.retryable) == (code, retryable)
    assert outcome.error.category == str(CATALOG.get(code).category)
