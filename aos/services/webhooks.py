"""Webhooks: a tenant's endpoint, its signing secret, the signed POST of one outbox row.

What a receiver gets (docs/webhooks.md):

- the body, canonical JSON: ``{"id", "type", "created_at", "data"}``, identical on every attempt;
- ``AOS-Webhook-Id``: the outbox row's id, the same on every retry (receivers dedupe on it);
- ``AOS-Event``: ``run.succeeded``, ``run.failed`` or ``budget.warning``;
- ``AOS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`` (Stripe's scheme: the
  timestamp is signed with the body, so a captured request cannot be replayed later than the receiver's
  tolerance). ``verify_signature`` is the reference check.

The endpoint is a URL the tenant chose, so it goes through the same SSRF guard as
``http.request`` (``aos.skills.ssrf``; ``AOS_HTTP_ALLOW_HOSTS`` lets private hosts through): the host
is resolved and vetted before every attempt and the request goes to the vetted address (no second
lookup, no DNS rebinding). Redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session

from aos.config import get_settings
from aos.db.models import WEBHOOK_EVENTS, Tenant
from aos.errors import AosError
from aos.runtime.catalog import CATALOG
from aos.skills.base import SkillError
from aos.skills.egress import EgressPolicy, guarded_client
from aos.skills.http import STATUS_CODES, safe_url
from aos.skills.retry_after import parse_retry_after
from aos.skills.ssrf import IPAddress

SIGNATURE_HEADER = "AOS-Signature"
ID_HEADER = "AOS-Webhook-Id"
EVENT_HEADER = "AOS-Event"
ATTEMPT_HEADER = "AOS-Delivery-Attempt"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "aos-webhooks/1"
# A receiver's error page is kept (in last_error) only this far: enough to see what it said.
EXCERPT_BYTES = 512


# --- signing ------------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``AOS-Signature`` header value for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(secret: str, header: str | None, body: bytes | str, tolerance_s: float = DEFAULT_TOLERANCE_S,
                     *, now: float | None = None) -> bool:
    """Whether ``header`` (an ``AOS-Signature`` value) signs ``body`` (the raw bytes received) with ``secret``
    and its timestamp is within ``tolerance_s`` of ``now``. Any one ``v1`` entry may match (room for
    several signatures); the comparison takes constant time."""
    if not header or not secret:
        return False
    raw = body.encode() if isinstance(body, str) else body
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if tolerance_s is not None and abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, c) for c in candidates)


# --- the tenant's endpoint -----------------------------------------------------------------------

def _view(tenant: Tenant, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"url": tenant.webhook_url, "secret_set": bool(tenant.webhook_secret),
                           "events": list(WEBHOOK_EVENTS)}
    if secret is not None:
        out["secret"] = secret  # shown once, when it is generated
    return out


def _tenant(s: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = s.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise AosError("TENANT_NOT_FOUND", f"no tenant {tenant_id}")
    return tenant


def get_webhook(s: Session, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's endpoint (the secret itself is never shown again)."""
    return _view(_tenant(s, tenant_id))


def set_webhook(s: Session, tenant_id: uuid.UUID, url: str | None) -> dict[str, Any]:
    """Point the tenant's webhooks at ``url`` (None turns them off). A secret is generated the first time
    and returned in the answer, once; an existing secret is kept."""
    tenant = _tenant(s, tenant_id)
    generated = None
    if url is None:
        tenant.webhook_url = None
        return _view(tenant)
    tenant.webhook_url = validate_url(url)
    if not tenant.webhook_secret:
        generated = tenant.webhook_secret = new_secret()
    return _view(tenant, generated)


def rotate_secret(s: Session, tenant_id: uuid.UUID) -> dict[str, Any]:
    """Replace the signing secret at once and return the new one (shown once). Deliveries signed with the old
    one that the receiver refuses are retried with the new one."""
    tenant = _tenant(s, tenant_id)
    secret = tenant.webhook_secret = new_secret()
    return _view(tenant, secret)


# The form of a webhook URL, documented as the API's `pattern` and checked first here, so the two agree on
# every string: http(s), optional user info, an ASCII host name (never all digits), a dotted-quad IPv4
# address or a bracketed IPv6 one, a port from 1 to 65535, then a path, query or fragment without spaces.
# What a pattern cannot say is refused after it: an A-label that is not valid punycode (HTTP_INVALID_URL),
# a name that does not resolve (HTTP_DNS_ERROR), an address the SSRF guard refuses (HTTP_SSRF_BLOCKED).
URL_MAX_CHARS = 2048
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}(?:\.{_OCTET}){{3}})"


_IPV6 = "|".join([
    rf"(?:{_H16}:){{6}}{_LS32}", rf"::(?:{_H16}:){{5}}{_LS32}", rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}", rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}", rf"(?:(?:{_H16}:){{0,6}}{_H16})?::"])
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
URL_PATTERN = re.compile(
    r"^https?://(?:[A-Za-z0-9._~%!$&'()*+,;=:-]+@)?"
    rf"(?:\[(?:{_IPV6})\]|{_OCTET}(?:\.{_OCTET}){{3}}|(?![0-9.]+(?:[:/?#]|$)){_LABEL}(?:\.{_LABEL})*\.?)"
    rf"(?::{_PORT})?(?:[/?#][\x21-\x7e]*)?$")


def validate_url(raw: str) -> str:
    """An absolute http(s) URL whose host passes the SSRF guard now (it is checked again at every attempt)."""
    text = raw or ""
    if not text or len(text) > URL_MAX_CHARS:
        raise AosError("VALIDATION_ERROR", f"the webhook url must be an http:// or https:// URL of at most "
                       f"{URL_MAX_CHARS} characters", problems=[_problem("the url is empty or too long")])
    if URL_PATTERN.fullmatch(text) is None:
        raise AosError("VALIDATION_ERROR", "the webhook url must be an absolute http:// or https:// URL with an "
                       "ASCII host name or an IP address (and a port from 1 to 65535)",
                       problems=[_problem("expected http(s)://host[:port][/path], without spaces")])
    try:
        url = httpx.URL(text)
        host, port = url.host, url.port  # decoding an IDNA host can fail too
        shown = str(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:  # e.g. an xn-- label that is not punycode
        raise AosError("VALIDATION_ERROR", f"the webhook url is not a valid URL: {exc}",
                       problems=[_problem(str(exc), "HTTP_INVALID_URL")]) from None
    if url.scheme not in ("http", "https") or not host:
        raise AosError("VALIDATION_ERROR", "the webhook url must be an absolute http:// or https:// URL",
                       problems=[_problem("expected http:// or https:// with a host")])
    if port is not None and not 0 < port < 65536:
        raise AosError("VALIDATION_ERROR", f"the webhook url's port {port} is not between 1 and 65535",
                       problems=[_problem("bad port")])
    try:
        vet(url)
    except SkillError as exc:
        if exc.code == "HTTP_SSRF_BLOCKED":
            raise AosError(exc.code, exc.message, details=exc.details) from None
        # an unresolvable host is the caller's input to fix (422), not an upstream failure (5xx); the problem
        # keeps the precise code (HTTP_DNS_ERROR, …)
        raise AosError("VALIDATION_ERROR", exc.message, problems=[_problem(exc.message, exc.code)]) from None
    except ValueError as exc:
        raise AosError("VALIDATION_ERROR", f"the webhook url's host is invalid: {exc}",
                       problems=[_problem(str(exc))]) from None
    return shown


def _problem(message: str, code: str = "VALIDATION_ERROR") -> dict[str, str]:
    return {"path": "$.url", "code": code, "message": message}


def vet(url: httpx.URL) -> list[IPAddress]:
    """The addresses the request may go to; SkillError (HTTP_SSRF_BLOCKED, HTTP_DNS_ERROR) otherwise. The
    delivery itself is vetted again, connection by connection, by the guarded transport."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return EgressPolicy.of(get_settings()).addresses(url.raw_host.decode("ascii"), port)


# --- one delivery ---------------------------------------------------------------------------------


def body_for(outbox_id: int, topic: str, payload: dict[str, Any], created_at: datetime) -> bytes:
    """The canonical body of an outbox row's webhook: the same bytes on every attempt."""
    data = {"run_id": payload.get("run_id"), **(payload.get("data") or {})}
    doc = {"id": str(outbox_id), "type": topic, "created_at": created_at.isoformat(), "data": data}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    secret: str
    outbox_id: int
    topic: str
    body: bytes
    attempt: int


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt came to. ``final``: retrying cannot help (the row goes dead at once)."""

    ok: bool
    code: str | None = None
    message: str | None = None
    status: int | None = None
    retry_after_s: float | None = None
    final: bool = False


def headers_for(req: WebhookRequest, timestamp: int | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: str(req.outbox_id),
        EVENT_HEADER: req.topic,
        ATTEMPT_HEADER: str(req.attempt),
        SIGNATURE_HEADER: sign(req.secret, req.body, timestamp),
    }


def deliver(req: WebhookRequest, timeout_s: float) -> DeliveryResult:
    """POST the webhook once. 2xx is success; any other status, a timeout or a connection error is a failed
    attempt to retry, except 410 Gone (the receiver says the endpoint is gone for good) and a URL the SSRF
    guard refuses, which are final."""
    try:
        url = httpx.URL(req.url)
        where = f"POST {safe_url(url)}"
        status, reason, excerpt, retry_after = _post(url, headers_for(req), req.body, timeout_s)
    except SkillError as exc:
        # the guard: DNS failures are transient; a refused address is policy and stays refused until the URL
        # changes
        return DeliveryResult(False, exc.code, exc.message, final=not CATALOG.get(exc.code).retryable)
    except (httpx.InvalidURL, ValueError) as exc:
        return DeliveryResult(False, "HTTP_INVALID_URL", f"webhook url is invalid: {exc}", final=True)
    except httpx.HTTPError as exc:
        entry = CATALOG.match(exc)
        return DeliveryResult(False, entry.code, f"{where}: {type(exc).__name__}: {exc}"[:1000])
    if 200 <= status < 300:
        return DeliveryResult(True, status=status)
    if 300 <= status < 400:
        return DeliveryResult(False, "HTTP_PROTOCOL_ERROR",
                              f"{where} answered {status} {reason}: webhooks do not follow redirects; "
                              "set the final URL", status=status)
    code = STATUS_CODES.get(status) or ("HTTP_CLIENT_ERROR" if status < 500 else "HTTP_SERVER_ERROR")
    message = f"{where} answered {status} {reason}".rstrip()
    if excerpt:
        message += f": {excerpt}"
    return DeliveryResult(False, code, message[:1000], status=status, retry_after_s=retry_after,
                          final=status == 410)


def _post(url: httpx.URL, headers: dict[str, str], body: bytes,
          timeout_s: float) -> tuple[int, str, str, float | None]:
    """One POST through the guarded transport (the SSRF guard at connect time, no redirect followed)."""
    with guarded_client(EgressPolicy.of(get_settings()), timeout=timeout_s) as client:
        with client.stream("POST", url, headers=headers, content=body) as response:
            excerpt = b""
            if not 200 <= response.status_code < 300:
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
            retry_after = parse_retry_after(response.headers.get("retry-after")) \
                if response.status_code in (429, 503) else None
            text = excerpt[:EXCERPT_BYTES].decode("utf-8", "replace").strip()
            return response.status_code, response.reason_phrase, text, retry_after
