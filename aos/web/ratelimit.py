"""Request rate limits per caller and per tenant, and the tenant's daily request quota (flask-limiter).

Every request to a protected endpoint spends units from three buckets, counted in Redis (shared by all
API processes; ``AOS_RATE_LIMIT_STORAGE_URL``, by default the broker's Redis) in fixed windows:

- the caller's (one API key, or one JWT ``sub``): ``AOS_RATE_LIMIT_KEY_PER_MINUTE`` units, or the tenant's
  own ``key_requests_per_minute`` (each window of ``AOS_RATE_LIMIT_WINDOW_S`` allows its share);
- the tenant's (all of its callers): ``AOS_RATE_LIMIT_TENANT_PER_MINUTE``, or its
  ``tenant_requests_per_minute``;
- the tenant's day (UTC), only when it has a ``daily_requests`` quota: one unit per request.

Most requests cost one unit; the expensive ones cost ``COSTS`` units. A request past a minute's bucket is
``429 RATE_LIMITED``; past the daily quota it is ``429 QUOTA_EXCEEDED`` naming ``daily_requests`` and
its reset. Both carry ``Retry-After`` and the ``RateLimit-Limit``/``-Remaining``/``-Reset`` headers of the
bucket that refused (IETF draft "RateLimit header fields"); every limited response carries
``RateLimit-Policy``. Public endpoints (health, errors, docs, /metrics) are not limited.

The caller is authenticated here, by the limiter's key function (``aos.web.auth.resolve_caller``), because
flask-limiter's app-level hook runs before the blueprint's own; the result is kept for the request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.errors import RateLimitExceeded

from aos.config import Settings, get_settings
from aos.services.quotas import next_reset
from aos.web.auth import ProtectedBlueprint, resolve_caller
from aos.web.errors import problem

# (endpoint, method) or endpoint → units; everything else costs 1. A submission makes Postgres rows and broker
# messages; a simulation reads a tenant's history; a golden replay runs a whole run and holds a thread while it
# waits; an event stream holds a thread for minutes.
COSTS: dict[tuple[str, str] | str, int] = {
    ("runs.Runs", "POST"): 5,
    "workflows.WorkflowRuns": 5,
    "runs.RunResume": 5,
    "dead-letters.DeadLetterReplay": 5,
    "simulate.Simulate": 10,
    "runs.RunEvents": 10,
    "golden.GoldenReplay": 20,
}


DAY_KEY_TTL_S = 2 * 86400  # a day's count outlives its day (GET /quotas near midnight), then goes


def caller_key() -> str:
    """The caller's bucket: its tenant and its key (or token subject: a ``sub`` is unique within a tenant's
    identity provider only)."""
    ctx = resolve_caller()
    return f"{ctx.tenant_id}/{ctx.caller}"


def request_cost() -> int:
    return COSTS.get((request.endpoint or "", request.method)) or COSTS.get(request.endpoint or "", 1)


class RateLimits:
    """The limiter of one app and the limits it applies."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.settings = settings
        self.protected = frozenset(name for name, bp in app.blueprints.items()
                                   if isinstance(bp, ProtectedBlueprint))
        self.limiter = Limiter(
            key_func=lambda: "unused",  # every limit names its own key
            application_limits=[
                ApplicationLimit(self._key_limit, key_function=caller_key, scope="key", cost=request_cost, exempt_when=self._exempt),
                ApplicationLimit(self._tenant_limit, key_function=lambda: str(resolve_caller().tenant_id),
                                 scope="tenant", cost=request_cost, exempt_when=self._exempt),
            ],
            storage_uri=storage_uri(settings), strategy="fixed-window", key_prefix="aos:rl",
            headers_enabled=False, swallow_errors=False, in_memory_fallback_enabled=False,
            enabled=settings.rate_limit_enabled)

    def _exempt(self) -> bool:
        return request.blueprint not in self.protected

    def requests_today(self, tenant_id: Any) -> int | None:
        """The tenant's API requests today (None: the limiter is off or its storage unreachable)."""
        if not self.limiter.enabled:
            return None
        try:
            return int(self.limiter.storage.get(self._day_key(tenant_id)) or 0)
        except Exception:  # noqa: BLE001 — usage is information; the quota itself is enforced on requests
            return None

    def count_day(self) -> Response | None:
        """Count the request in the tenant's day (for every tenant: GET /quotas shows it) and refuse it past a
        ``daily_requests`` quota. A hook after flask-limiter's: one INCR, which also answers the count."""
        if not self.limiter.enabled or self._exempt():
            return None
        ctx = resolve_caller()
        now = datetime.now(UTC)
        count = self.limiter.storage.incr(self._day_key(ctx.tenant_id, now), DAY_KEY_TTL_S)
        quota = ctx.quotas.daily_requests
        if quota is None or count <= quota:
            return None
        midnight = next_reset(now)
        reset_in = max(1, int((midnight - now).total_seconds() + 0.999))
        response = problem("QUOTA_EXCEEDED", f"the tenant's daily quota of {quota} requests is used up; it "
                           f"resets at {midnight.isoformat()}",
                           details={"quota": "daily_requests", "limit": quota, "resets_at": midnight.isoformat(),
                                    "retry_after_s": reset_in})
        response.headers.update({"Retry-After": str(reset_in), "RateLimit-Limit": str(quota),
                                 "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset_in),
                                 "RateLimit-Policy": f"{quota};w=86400"})
        return response

    def _per_window(self, per_minute: int) -> str:
        window = self.settings.rate_limit_window_s
        return f"{max(1, -(-per_minute * window // 60))} per {window} second"

    # flask-limiter asks for the limit before it asks whether the request is exempt: a public endpoint has
    # none (an empty string), so its caller is never authenticated
    def _key_limit(self) -> str:
        if self._exempt():
            return ""
        per_minute = resolve_caller().quotas.key_requests_per_minute or self.settings.rate_limit_key_per_minute
        return self._per_window(per_minute)

    def _tenant_limit(self) -> str:
        if self._exempt():
            return ""
        per_minute = resolve_caller().quotas.tenant_requests_per_minute or self.settings.rate_limit_tenant_per_minute
        return self._per_window(per_minute)

    @staticmethod
    def _day_key(tenant_id: Any, now: datetime | None = None) -> str:
        # the UTC date is in the key, so the count starts again at midnight UTC like the daily budget
        return f"aos:rl:day:{tenant_id}:{(now or datetime.now(UTC)).date().isoformat()}"

    def refused(self, _exc: RateLimitExceeded) -> Response:
        """429 problem+json for the bucket that refused, with Retry-After and RateLimit-* headers."""
        breached = self.limiter.current_limit
        now = time.time()
        if breached is None:  # pragma: no cover — flask-limiter sets it before raising
            return problem("RATE_LIMITED", "too many requests; retry shortly")
        reset_in = max(1, round(breached.window[0] - now))  # Redis answers the window's TTL in whole seconds
        amount = breached.limit.amount
        scope = breached.request_args[-1] if breached.request_args else ""
        who = "this API key (or token subject)" if scope == "key" else "this tenant"
        window = self.settings.rate_limit_window_s
        response = problem("RATE_LIMITED", f"{who} may spend {amount} request units per {window} s (this "
                           f"request costs {request_cost()}); retry in {reset_in} s",
                           details={"limit": amount, "scope": scope, "cost": request_cost(),
                                    "retry_after_s": reset_in})
        response.headers.update({
            "Retry-After": str(reset_in), "RateLimit-Limit": str(amount),
            "RateLimit-Remaining": str(max(0, breached.remaining)), "RateLimit-Reset": str(reset_in),
            "RateLimit-Policy": f"{amount};w={window}"})
        return response

    def add_policy(self, response: Response) -> Response:
        """``RateLimit-Policy`` of the caller's buckets on every limited response (no Redis read)."""
        if not self.limiter.enabled or self._exempt() or "RateLimit-Policy" in response.headers:
            return response
        try:
            key, tenant = self._key_limit().split()[0], self._tenant_limit().split()[0]
        except Exception:  # noqa: BLE001 — an unauthenticated request has no policy of its own
            return response
        window = self.settings.rate_limit_window_s
        response.headers["RateLimit-Policy"] = f"{key};w={window}, {tenant};w={window}"
        return response


def storage_uri(settings: Settings) -> str:
    """Where the counters live: the setting, else the broker's Redis (same server, own keys), else memory."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    broker = settings.broker_url or ""
    if broker.startswith(("redis://", "rediss://")):
        return broker
    if broker.startswith("redis+socket://"):
        return "redis+unix://" + broker.removeprefix("redis+socket://")
    return "memory://"


def register(app: Flask) -> RateLimits:
    """Bind the limiter to ``app`` (after its blueprints: it limits the protected ones)."""
    limits = RateLimits(app, get_settings())
    limits.limiter.init_app(app)
    app.extensions["aos.rate_limits"] = limits
    app.register_error_handler(RateLimitExceeded, limits.refused)
    app.before_request(limits.count_day)  # after flask-limiter's own hook (registered by init_app)
    app.after_request(limits.add_policy)
    return limits


def rate_limits_of(app: Any) -> RateLimits:
    return app.extensions["aos.rate_limits"]
