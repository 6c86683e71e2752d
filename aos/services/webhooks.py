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
from aos.skills.http import STATUS_CODES, safe_url
from aos.skills.retry_after import parse_retry_after
from aos.skills.ssrf import AllowList, IPAddress, check_host, parse_ip

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


def validate_url(raw: str) -> str:
    """An absolute http(s) URL whose host passes the SSRF guard now (it is checked again at every attempt)."""
    text = (raw or "").strip()
    if not text or len(text) > 2048:
        raise AosError("VALIDATION_ERROR", "the webhook url must be an http:// or https:// URL of at most 2048 "
                       "characters", problems=[_problem("the url is empty or too long")])
    try:
        url = httpx.URL(text)
        host, port = url.host, url.port  # decoding an IDNA host can fail too
        shown = str(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise AosError("VALIDATION_ERROR", f"the webhook url is not a valid URL: {exc}",
                       problems=[_problem(str(exc))]) from None
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
        # an unresolvable host is the caller's input to fix (422), not an upstream failure (5xx)
        raise AosError("VALIDATION_ERROR", exc.message, problems=[_problem(exc.message)]) from None
    except ValueError as exc:
        raise AosError("VALIDATION_ERROR", f"the webhook url's host is invalid: {exc}",
                       problems=[_problem(str(exc))]) from None
    return shown


def _problem(message: str) -> dict[str, str]:
    return {"path": "$.url", "code": "VALIDATION_ERROR", "message": message}


def vet(url: httpx.URL) -> list[IPAddress]:
    """The addresses the request may go to; SkillError (HTTP_SSRF_BLOCKED, HTTP_DNS_ERROR) otherwise."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return check_host(url.raw_host.decode("ascii"), port, AllowList.parse(get_settings().http_allow_hosts))


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
        addresses = vet(url)
    except SkillError as exc:
        # DNS failures are transient; a refused address is policy and stays refused until the URL changes
        return DeliveryResult(False, exc.code, exc.message, final=not CATALOG.get(exc.code).retryable)
    except (httpx.InvalidURL, ValueError) as exc:
        return DeliveryResult(False, "HTTP_INVALID_URL", f"webhook url is invalid: {exc}", final=True)
    where = f"POST {safe_url(url)}"
    try:
        status, reason, excerpt, retry_after = _post(url, addresses, headers_for(req), req.body, timeout_s)
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


def _post(url: httpx.URL, addresses: list[IPAddress], headers: dict[str, str], body: bytes,
          timeout_s: float) -> tuple[int, str, str, float | None]:
    """Send to the vetted addresses in turn (a refused connection sent nothing, so the next is safe)."""
    pinned = dict(headers)
    extensions: dict[str, Any] = {}
    literal = parse_ip(url.host) is not None
    if not literal:
        pinned["Host"] = url.netloc.decode("ascii")
        if url.scheme == "https":
            extensions["sni_hostname"] = url.raw_host.decode("ascii")
    # trust_env=False: a proxy from the environment would make the vetted address meaningless
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=timeout_s) as client:
        for i, addr in enumerate(addresses):
            target = url if literal else url.copy_with(host=str(addr))
            request = client.build_request("POST", target, headers=pinned, content=body, extensions=extensions)
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
                continue
            try:
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
            finally:
                response.close()
    raise AssertionError("unreachable: check_host returns at least one address")
