"""http.request: one HTTP exchange with httpx, behind an SSRF guard and a capability policy.

Every connection goes through aos.skills.egress, the guarded transport all of
AOS's outbound clients share: the capability policy and the SSRF guard pass each
request and each connection, and the connection goes to the address the guard
vetted, so a DNS answer that changes between check and connect cannot lead into
the private network. Redirects are followed here, by hand, so that each hop goes
through the same transport and credentials never follow a hop to another origin.

The output holds no timings: outputs are hashed for determinism.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from aos.redaction import redact_url
from aos.skills.base import CostModel, RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult
from aos.skills.egress import EgressPolicy, guarded_client, load_transports
from aos.skills.retry_after import parse_retry_after

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
STATUS_CODES = {
    400: "HTTP_BAD_REQUEST", 401: "HTTP_UNAUTHORIZED", 403: "HTTP_FORBIDDEN", 404: "HTTP_NOT_FOUND",
    409: "HTTP_CONFLICT", 422: "HTTP_UNPROCESSABLE", 429: "RATE_LIMITED", 502: "HTTP_BAD_GATEWAY",
    503: "HTTP_SERVICE_UNAVAILABLE", 504: "HTTP_GATEWAY_TIMEOUT",
}
# Headers whose values are credentials for one origin: never carried to another.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
# Computed from the URL and the body; a caller's value would contradict them.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

_SCALAR = {"type": ["string", "number", "boolean"]}
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "not": {"required": ["json", "body"]},
    "properties": {
        "method": {"enum": list(METHODS), "default": "GET"},
        "url": {"type": "string", "minLength": 1, "maxLength": 8192, "description": "an http:// or https:// URL"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {"type": "object",
                  "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]},
                  "description": "added to the URL's query string"},
        "json": {"description": "any JSON value, sent as application/json (not with body)"},
        "body": {"type": "string", "description": "a text body, sent as UTF-8 (not with json)"},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "follow_redirects": {"type": "boolean", "default": True},
        "expect_json": {"type": "boolean", "default": False,
                        "description": "fail with HTTP_PROTOCOL_ERROR when the body is not JSON"},
        "fail_on_status": {"type": "boolean", "default": True,
                           "description": "4xx/5xx fail the step; false returns them as output"},
    },
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "headers", "json", "text", "url"],
    "properties": {
        "status": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "json": {"description": "the parsed body when it is JSON, else null"},
        "text": {"type": "string"},
        "url": {"type": "string", "description": "the final URL, after redirects (credentials masked)"},
    },
}


class HttpRequest(Skill):
    name = "http.request"
    version = 1
    summary_text = "One HTTP request"
    description = ("Send one HTTP request (GET, POST, …) and return status, headers and body; "
                   "private addresses are refused unless allow-listed.")
    input_schema = INPUT_SCHEMA
    output_schema = OUTPUT_SCHEMA
    side_effect = SideEffect.EXTERNAL
    deterministic = False
    cost_model = CostModel(fixed_usd=0.0, latency_ms=300.0)
    default_timeout_s = 30.0
    default_retry = RetryPolicy(max_attempts=5, backoff_s=1.0, backoff_max_s=60.0)
    recommended = 2

    def upstream(self, args: dict[str, Any], ctx: SkillContext) -> str | None:
        """The URL's host (and port, when it names one): what a circuit breaker guards."""
        try:
            parts = urlsplit(args["url"])
            host = (parts.hostname or "").lower()
            return f"{host}:{parts.port}" if parts.port else host or None
        except (KeyError, TypeError, ValueError):
            return None  # the skill itself reports a bad URL

    def warm_up(self) -> None:
        load_transports()

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        method: str = args.get("method", "GET")
        url = _parse_url(args["url"])
        if args.get("query"):
            url = url.copy_merge_params({k: _query_value(v) for k, v in args["query"].items()})
        headers = _request_headers(args.get("headers") or {})
        content: bytes | None = None
        if "json" in args:
            content = json.dumps(args["json"], separators=(",", ":"), ensure_ascii=False).encode()
            headers.setdefault("Content-Type", "application/json")
        elif "body" in args:
            content = args["body"].encode("utf-8")
        if method in UNSAFE_METHODS and ctx.idempotency_key and "idempotency-key" not in headers:
            headers["Idempotency-Key"] = ctx.idempotency_key
        headers.setdefault("User-Agent", "aos-http/1")
        timeout_s = float(args.get("timeout_s") or ctx.timeout_s or self.default_timeout_s)
        exchange = _Exchange(ctx, method, url, timeout_s, follow=args.get("follow_redirects", True))
        try:
            response, body = exchange.perform(headers, content)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, exchange.method, exchange.url) from exc
        output = _output(response, body, exchange.url, bool(args.get("expect_json")),
                         fail_on_status=args.get("fail_on_status", True), method=exchange.method)
        return SkillResult(output=output, raw=copy.deepcopy(output))

    def replay(self, args: dict[str, Any], recorded: SkillResult, ctx: SkillContext) -> SkillResult:
        """The recorded response is the output (status, headers, body): a replay sends nothing."""
        raw = recorded.raw if recorded.raw is not None else recorded.output
        return SkillResult(output=copy.deepcopy(raw), raw=raw)


class _Exchange:
    """One request and its redirect hops; ``method`` and ``url`` are those of the current hop."""

    def __init__(self, ctx: SkillContext, method: str, url: httpx.URL, timeout_s: float, follow: bool) -> None:
        self.ctx = ctx
        self.method = method
        self.url = url
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.follow = follow
        self.policy = EgressPolicy.of(ctx.settings, ctx.capabilities)
        self.max_redirects = ctx.settings.http_max_redirects
        self.max_bytes = ctx.settings.http_max_response_bytes

    def perform(self, headers: httpx.Headers, content: bytes | None) -> tuple[httpx.Response, bytes]:
        first_url = self.url
        redirects = 0
        with guarded_client(self.policy) as client:
            while True:
                response = self._send(client, headers, content)
                try:
                    target = self._redirect_target(response)
                    if target is None:
                        return response, self._read_capped(response)
                finally:
                    response.close()
                redirects += 1
                if redirects > self.max_redirects:
                    raise SkillError("HTTP_TOO_MANY_REDIRECTS",
                                     f"{self.method} {safe_url(first_url)}: more than {self.max_redirects} redirects",
                                     details={"max_redirects": self.max_redirects, "last_url": safe_url(self.url)})
                if (response.status_code == 303 and self.method != "HEAD") or (
                        response.status_code in (301, 302) and self.method == "POST"):
                    # what browsers do, and what servers answering a form POST expect
                    self.method, content = "GET", None
                    for name in ("content-type", "content-length", "content-encoding"):
                        headers.pop(name, None)
                if _origin(target) != _origin(self.url):
                    for name in CREDENTIAL_HEADERS:
                        headers.pop(name, None)
                self.url = target

    def _send(self, client: httpx.Client, headers: httpx.Headers, content: bytes | None) -> httpx.Response:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise httpx.TimeoutException("the request's overall timeout elapsed")
        client.cookies.clear()  # no implicit cookie jar: a hop sends only the headers the plan gave
        request = client.build_request(self.method, self.url, headers=headers, content=content,
                                       timeout=min(self.timeout_s, remaining))
        return client.send(request, stream=True)

    def _redirect_target(self, response: httpx.Response) -> httpx.URL | None:
        if not self.follow or response.status_code not in REDIRECT_STATUSES:
            return None
        location = response.headers.get("location")
        if not location:
            return None
        try:
            target = self.url.join(location)
        except httpx.InvalidURL:
            raise SkillError("HTTP_PROTOCOL_ERROR", f"{safe_url(self.url)} redirected to an unparsable Location",
                             details={"status": response.status_code}) from None
        if target.scheme not in ("http", "https") or not target.host:
            raise SkillError("HTTP_INVALID_URL", f"{safe_url(self.url)} redirected to a non-HTTP URL "
                             f"(scheme {target.scheme!r})", details={"status": response.status_code})
        return target

    def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(self.url, limit, declared=int(declared))
        chunks: list[bytes] = []
        total = 0
        # decoded bytes are counted, so a small gzip bomb is stopped as well
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise _too_large(self.url, limit)
            if time.monotonic() > self.deadline:
                raise httpx.ReadTimeout("the response body did not arrive within the timeout")
            chunks.append(chunk)
        return b"".join(chunks)


def _output(response: httpx.Response, body: bytes, url: httpx.URL, expect_json: bool, *,
            fail_on_status: bool, method: str) -> dict[str, Any]:
    status = response.status_code
    text = _decode(body, response.charset_encoding)
    if fail_on_status and status >= 400:
        raise _status_error(response, text, method, url)
    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
    parsed: Any = None
    if expect_json or mime == "application/json" or mime.endswith("+json"):
        try:
            parsed = json.loads(body, parse_constant=_reject_constant) if body else None
        except ValueError as exc:
            if expect_json:
                raise SkillError("HTTP_PROTOCOL_ERROR", f"{method} {safe_url(url)}: body is not JSON ({exc})",
                                 details={"status": status, "content_type": mime}) from None
        if expect_json and not body:
            raise SkillError("HTTP_PROTOCOL_ERROR", f"{method} {safe_url(url)}: empty body, JSON expected",
                             details={"status": status})
    return {
        "status": status,
        "headers": {k.lower(): v for k, v in response.headers.items()},
        "json": parsed,
        "text": text,
        # the final URL, without user-info and with credential query values masked: an output is stored,
        # shown and recorded, and the request's secrets must not come back through it
        "url": redact_url(str(url.copy_with(userinfo=b""))),
    }


def _status_error(response: httpx.Response, text: str, method: str, url: httpx.URL) -> SkillError:
    status = response.status_code
    code = STATUS_CODES.get(status) or ("HTTP_CLIENT_ERROR" if status < 500 else "HTTP_SERVER_ERROR")
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    details = {"status": status, "url": safe_url(url), "body_excerpt": text[:512]}
    msg = f"{method} {safe_url(url)} returned {status} {response.reason_phrase}".rstrip()
    return SkillError(code, msg, details=details, retry_after_s=retry_after)


def _transport_error(exc: httpx.HTTPError, method: str, url: httpx.URL) -> SkillError:
    """Map an httpx failure to its code. Messages name the method and URL only: never request headers."""
    where = f"{method} {safe_url(url)}"
    if isinstance(exc, httpx.TimeoutException):
        return SkillError("HTTP_TIMEOUT", f"{where}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError) and _is_tls(exc):
        return SkillError("HTTP_TLS_ERROR", f"{where}: TLS failed: {exc}")
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return SkillError("HTTP_CONNECT_ERROR", f"{where}: connection failed: {exc}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return SkillError("HTTP_INVALID_URL", f"{where}: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return SkillError("HTTP_PROTOCOL_ERROR", f"{where}: invalid response: {exc}")
    # LocalProtocolError and others may quote a header value, so only the type is named
    return SkillError("HTTP_PROTOCOL_ERROR", f"{where}: {type(exc).__name__}")


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _too_large(url: httpx.URL, limit: int, declared: int | None = None) -> SkillError:
    said = f" (Content-Length {declared})" if declared is not None else ""
    return SkillError("HTTP_RESPONSE_TOO_LARGE",
                      f"{safe_url(url)}: response body exceeds {limit} bytes{said} (AOS_HTTP_MAX_RESPONSE_BYTES)",
                      details={"limit_bytes": limit, "content_length": declared})


def safe_url(url: httpx.URL) -> str:
    """The URL without credentials or query string (either may carry a secret), for messages."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def _parse_url(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise SkillError("HTTP_INVALID_URL", f"url does not parse: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise SkillError("HTTP_INVALID_URL", f"url scheme must be http or https, not {url.scheme!r}",
                         details={"scheme": url.scheme})
    if not url.host:
        raise SkillError("HTTP_INVALID_URL", "url has no host")
    return url


def _request_headers(given: dict[str, str]) -> httpx.Headers:
    headers = httpx.Headers()
    for name, value in given.items():
        if not _TOKEN.fullmatch(name):
            raise SkillError("SKILL_ARGS_INVALID", f"header name {name!r} is not a valid HTTP token")
        if name.lower() in RESERVED_HEADERS:
            raise SkillError("SKILL_ARGS_INVALID", f"header {name!r} is set by http.request itself")
        # the value is never quoted back: it may be a secret
        if any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in value):
            raise SkillError("SKILL_ARGS_INVALID", f"header {name!r} has a value with control characters")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise SkillError("SKILL_ARGS_INVALID", f"header {name!r} has a value outside Latin-1") from None
        headers[name] = value
    return headers


def _query_value(v: Any) -> Any:
    if isinstance(v, list):
        return [_query_value(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name from the server
        return body.decode("utf-8", errors="replace")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


SKILLS: list[Skill] = [HttpRequest()]
