"""Request rate limits per caller and per tenant, and the tenant's daily request quota: one Redis script.

Every request to a protected endpoint spends units from two token buckets and is counted in the tenant's
day, all in one round trip to Redis (``BUCKETS``, a Lua script: atomic, shared by every API process;
``AOS_RATE_LIMIT_STORAGE_URL``, by default the broker's Redis):

- the caller's bucket (one API key, or one JWT ``sub`` of the tenant): refills at
  ``AOS_RATE_LIMIT_KEY_PER_MINUTE`` units a minute, or the tenant's own ``key_requests_per_minute``;
- the tenant's bucket (all of its callers): ``AOS_RATE_LIMIT_TENANT_PER_MINUTE``, or its
  ``tenant_requests_per_minute``;
- the tenant's day (UTC): counted for every tenant (GET /quotas shows it), refused past a ``daily_requests``
  quota.

A bucket holds ``AOS_RATE_LIMIT_BURST_S`` seconds of its rate: a caller idle for that long may send that
many units at once, then its rate. Most requests cost one unit; the expensive ones ``COSTS`` (never more than
a bucket holds, so a small rate still allows them, slowly). A refused request spends nothing. Past a bucket
the answer is ``429 RATE_LIMITED``; past the daily quota ``429 QUOTA_EXCEEDED`` naming ``daily_requests``
and its reset. Both carry ``Retry-After`` (when the bucket holds enough again) and ``RateLimit-Limit`` /
``-Remaining`` / ``-Reset`` (IETF draft "RateLimit header fields"); every limited answer carries the
remaining units of the tighter bucket and ``RateLimit-Policy``. Public endpoints (health, errors, docs,
/metrics) are not limited.

Why not flask-limiter: it was the first version (commit 369582a) and cost 1.25 ms a request here (two
fixed-window hits and the day count, three round trips, and its per-request limit resolution), against a
target of 0.5 ms; this script costs one round trip (``bench/api.py --limiter`` measures it). A broker
that is not Redis (RabbitMQ) and no ``AOS_RATE_LIMIT_STORAGE_URL``: the same buckets in process memory
(per API process, said in docs/security.md). Redis not answering: requests are let through unlimited (a
warning a minute in the log), not refused.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Flask, Response, g, request

from aos.config import Settings, get_settings
from aos.services.quotas import day_key, next_reset, rate_limit_storage
from aos.services.tenancy import TenantContext
from aos.web.auth import ProtectedBlueprint, resolve_caller
from aos.web.errors import problem

log = logging.getLogger("aos.ratelimit")

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
OK, KEY, TENANT, DAY = 0, 1, 2, 3

# KEYS: caller bucket, tenant bucket, day counter. ARGV: cost, caller capacity, caller rate (units/s), tenant
# capacity, tenant rate, daily quota (-1: none), day counter TTL. A bucket is a hash {t: tokens, ts: time}.
# Answers {verdict, caller tokens left, tenant tokens left, day count, retry after (ms)}.
BUCKETS = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local cost = tonumber(ARGV[1])
local function level(key, cap, rate)
  local v = redis.call('HMGET', key, 't', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return cap end
  return math.min(cap, tokens + math.max(0, now - ts) * rate)
end
local kcap, krate, tcap, trate = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local quota = tonumber(ARGV[6])
local k, t = level(KEYS[1], kcap, krate), level(KEYS[2], tcap, trate)
if quota >= 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= quota then return {3, math.floor(k), math.floor(t), used, 0} end
end
if k < cost then return {1, math.floor(k), math.floor(t), 0, math.ceil((cost - k) / krate * 1000)} end
if t < cost then return {2, math.floor(k), math.floor(t), 0, math.ceil((cost - t) / trate * 1000)} end
k, t = k - cost, t - cost
redis.call('HSET', KEYS[1], 't', tostring(k), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(kcap / krate * 1000) + 1000)
redis.call('HSET', KEYS[2], 't', tostring(t), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[2], math.ceil(tcap / trate * 1000) + 1000)
local day = redis.call('INCR', KEYS[3])
if day == 1 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7])) end
return {0, math.floor(k), math.floor(t), day, 0}
"""


def request_cost() -> int:
    return COSTS.get((request.endpoint or "", request.method)) or COSTS.get(request.endpoint or "", 1)


@dataclass(frozen=True)
class Bucket:
    capacity: int
    rate: float  # units a second

    @classmethod
    def of(cls, per_minute: int, burst_s: float) -> Bucket:
        return cls(capacity=max(1, math.ceil(per_minute * burst_s / 60)), rate=per_minute / 60)


class RedisBuckets:
    """The buckets in Redis (one EVALSHA a request)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.script = self.client.register_script(BUCKETS)

    def spend(self, keys: list[str], args: list[Any]) -> list[int]:
        return [int(x) for x in self.script(keys=keys, args=args)]

    def count(self, key: str) -> int:
        return int(self.client.get(key) or 0)  # type: ignore[arg-type]


class MemoryBuckets:
    """The same buckets in this process (a broker that is not Redis and no storage URL)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.days: dict[str, int] = {}

    def spend(self, keys: list[str], args: list[Any]) -> list[int]:
        cost, kcap, krate, tcap, trate, quota = (float(a) for a in args[:6])
        now = time.time()
        with self.lock:
            def level(key: str, cap: float, rate: float) -> float:
                tokens, ts = self.buckets.get(key, (cap, now))
                return min(cap, tokens + max(0.0, now - ts) * rate)

            k, t = level(keys[0], kcap, krate), level(keys[1], tcap, trate)
            if quota >= 0 and self.days.get(keys[2], 0) >= quota:
                return [DAY, int(k), int(t), self.days[keys[2]], 0]
            if k < cost:
                return [KEY, int(k), int(t), 0, math.ceil((cost - k) / krate * 1000)]
            if t < cost:
                return [TENANT, int(k), int(t), 0, math.ceil((cost - t) / trate * 1000)]
            self.buckets[keys[0]], self.buckets[keys[1]] = (k - cost, now), (t - cost, now)
            self.days[keys[2]] = self.days.get(keys[2], 0) + 1
            return [OK, int(k - cost), int(t - cost), self.days[keys[2]], 0]

    def count(self, key: str) -> int:
        return self.days.get(key, 0)


class RateLimits:
    """The limits of one app."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.protected = frozenset(name for name, bp in app.blueprints.items()
                                   if isinstance(bp, ProtectedBlueprint))
        url = rate_limit_storage(settings)
        self.store: RedisBuckets | MemoryBuckets = MemoryBuckets() if url == "memory://" else RedisBuckets(url)

    def buckets(self, ctx: TenantContext, settings: Settings) -> tuple[Bucket, Bucket]:
        q, burst = ctx.quotas, settings.rate_limit_burst_s
        return (Bucket.of(q.key_requests_per_minute or settings.rate_limit_key_per_minute, burst),
                Bucket.of(q.tenant_requests_per_minute or settings.rate_limit_tenant_per_minute, burst))

    def check(self) -> Response | None:
        """The app-level hook: spend the request's units, or answer 429."""
        settings = get_settings()
        if not settings.rate_limit_enabled or request.blueprint not in self.protected:
            return None
        ctx = resolve_caller()
        mine, tenant = self.buckets(ctx, settings)
        cost = request_cost()
        quota = ctx.quotas.daily_requests
        now = datetime.now(UTC)
        try:
            verdict, left_mine, left_tenant, day, retry_ms = self.store.spend(
                [f"aos:rl:k:{ctx.tenant_id}/{ctx.caller}", f"aos:rl:t:{ctx.tenant_id}", day_key(ctx.tenant_id, now)],
                [min(cost, mine.capacity, tenant.capacity), mine.capacity, mine.rate, tenant.capacity, tenant.rate,
                 -1 if quota is None else quota, DAY_KEY_TTL_S])
        except redis.RedisError as exc:
            # Open, not closed: the limiter guards the API's capacity, it must not take the API down with Redis
            # (which is the broker too: submissions then fail on their own, reads keep working).
            _warn_unlimited(exc)
            return None
        if verdict == OK:
            tighter, left = (mine, left_mine) if left_mine / mine.capacity <= left_tenant / tenant.capacity \
                else (tenant, left_tenant)
            g.rate_headers = _headers(tighter, left, math.ceil((tighter.capacity - left) / tighter.rate),
                                      settings.rate_limit_burst_s)
            return None
        if verdict == DAY:
            return self._over_quota(quota or 0, now)
        bucket, left, scope = (mine, left_mine, "key") if verdict == KEY else (tenant, left_tenant, "tenant")
        wait = max(1, math.ceil(retry_ms / 1000))
        who = "this API key (or token subject)" if scope == "key" else "this tenant"
        response = problem("RATE_LIMITED", f"{who} may spend {round(bucket.rate * 60)} request units a minute "
                           f"(this request costs {cost}); retry in {wait} s",
                           details={"scope": scope, "limit_per_minute": round(bucket.rate * 60), "cost": cost,
                                    "retry_after_s": wait})
        response.headers.update({"Retry-After": str(wait),
                                 **_headers(bucket, left, wait, settings.rate_limit_burst_s)})
        return response

    @staticmethod
    def _over_quota(quota: int, now: datetime) -> Response:
        midnight = next_reset(now)
        wait = max(1, math.ceil((midnight - now).total_seconds()))
        response = problem("QUOTA_EXCEEDED", f"the tenant's daily quota of {quota} requests is used up; it resets "
                           f"at {midnight.isoformat()}",
                           details={"quota": "daily_requests", "limit": quota, "resets_at": midnight.isoformat(),
                                    "retry_after_s": wait})
        response.headers.update({"Retry-After": str(wait), "RateLimit-Limit": str(quota),
                                 "RateLimit-Remaining": "0", "RateLimit-Reset": str(wait),
                                 "RateLimit-Policy": f"{quota};w=86400"})
        return response

    @staticmethod
    def add_headers(response: Response) -> Response:
        headers = g.get("rate_headers")
        if headers:
            for name, value in headers.items():
                response.headers.setdefault(name, value)
        return response

    def requests_today(self, tenant_id: Any) -> int | None:
        """The tenant's API requests today (None: limits are off or their storage is unreachable)."""
        if not get_settings().rate_limit_enabled:
            return None
        try:
            return self.store.count(day_key(tenant_id))
        except redis.RedisError:
            return None


_last_warning = 0.0


def _warn_unlimited(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > 60:  # once a minute, not once a request
        _last_warning = time.monotonic()
        log.warning("rate limits are not enforced: their Redis does not answer (%s)", exc)


def _headers(bucket: Bucket, left: int, reset_s: int, burst_s: float) -> dict[str, str]:
    return {"RateLimit-Limit": str(bucket.capacity), "RateLimit-Remaining": str(max(0, left)),
            "RateLimit-Reset": str(max(0, reset_s)), "RateLimit-Policy": f"{bucket.capacity};w={burst_s:g}"}


def register(app: Flask) -> RateLimits:
    """Limit ``app``'s protected blueprints (call after they are registered)."""
    limits = RateLimits(app, get_settings())
    app.extensions["aos.rate_limits"] = limits
    app.before_request(limits.check)
    app.after_request(limits.add_headers)
    return limits


def rate_limits_of(app: Any) -> RateLimits:
    return app.extensions["aos.rate_limits"]
