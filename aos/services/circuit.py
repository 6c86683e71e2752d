"""Circuit breakers per tenant, skill and upstream (a host, a provider), shared by every worker through Redis.

A breaker is closed until ``AOS_CIRCUIT_FAILURES`` retryable failures of its upstream happen within
``AOS_CIRCUIT_WINDOW_S``; then it is open: a step that would call that upstream does not call it, and
fails fast with ``CIRCUIT_OPEN`` — retryable, its countdown the rest of the cool-down, and without
spending an attempt (the engine gives the claimed attempt back, ``step_store.defer``). Once the
cool-down (``AOS_CIRCUIT_COOLDOWN_S``) has passed the breaker is half-open: one step (the probe, a
``SET NX`` that every worker races for) calls the upstream; its success closes the breaker, a
retryable failure opens it again for another cool-down. Every transition is a metric, a log line and
an event on the timeline of the run whose step caused it.

The cost on the step path: one Redis ``GET`` before a call of a skill that names an upstream
(``Skill.upstream``), nothing for the others; writes only on failures and transitions. When Redis does
not answer, breakers count as closed: a breaker must never be why a step fails.

Keys (``aos:circuit:<tenant>:<skill>:<upstream>``): the key itself holds the end of the cool-down (epoch
seconds) while the breaker is open or half-open; ``…:fails`` counts failures in the current window;
``…:probe`` names the probe in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from aos import metrics
from aos.config import Settings, get_settings, redis_py_url
from aos.runtime.outcome import StructuredOutcome

log = logging.getLogger(__name__)

# after the cool-down an untouched breaker stays half-open this long before it is forgotten (closed)
FORGET_AFTER_S = 3600
# how long a probe in flight keeps the others out, at most (a probe whose worker died frees it then)
PROBE_TTL_S = 120
# a step that lost the race for the probe tries again after this, at most
PROBE_WAIT_S = 2.0

# One failure counted, atomically: the window starts with its first failure; at the threshold the breaker
# opens — once: the caller that opened it is the one that reports the transition.
_FAIL = """
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
if n >= tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


@dataclass(slots=True)
class Verdict:
    """What the breaker says to one call: go (``probe`` when it is the half-open probe), or wait ``countdown``."""

    key: str
    upstream: str
    allow: bool
    probe: bool = False
    countdown: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)


class Breakers:
    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.threshold = settings.circuit_failures
        self.window_ms = max(1, int(settings.circuit_window_s * 1000))
        self.cooldown = settings.circuit_cooldown_s
        self._fail = client.register_script(_FAIL)
        self._warned = 0.0

    def check(self, tenant: Any, skill: str, upstream: str) -> Verdict | None:
        """None: the breaker is closed (the common case, one GET). Else whether this call may go."""
        key = f"aos:circuit:{tenant}:{skill}:{upstream}"
        try:
            until = self.client.get(key)
            if until is None:
                return None
            wait = float(until) - time.time()
            if wait > 0:
                return Verdict(key, upstream, allow=False, countdown=wait)
            if self.client.set(f"{key}:probe", "1", nx=True, ex=PROBE_TTL_S):
                _transition("half_open", skill, upstream)
                return Verdict(key, upstream, allow=True, probe=True,
                               events=[_event("circuit.half_open", upstream)])
            return Verdict(key, upstream, allow=False, countdown=min(self.cooldown, PROBE_WAIT_S))
        except (redis.RedisError, OSError, ValueError):
            self._unavailable()
            return None

    def record(self, verdict: Verdict | None, tenant: Any, skill: str, upstream: str,
               outcome: StructuredOutcome) -> list[dict[str, Any]]:
        """Count the call's outcome; the timeline events of the transitions it caused."""
        err = outcome.error
        failed = err is not None and err.retryable
        key = verdict.key if verdict is not None else f"aos:circuit:{tenant}:{skill}:{upstream}"
        events = list(verdict.events) if verdict is not None else []
        try:
            if verdict is not None and verdict.probe:
                if failed:
                    self.client.set(key, str(time.time() + self.cooldown), ex=int(self.cooldown) + FORGET_AFTER_S)
                    self.client.delete(f"{key}:probe")
                    _transition("opened", skill, upstream, f"the probe failed ({err.code if err else ''})")
                    events.append(_event("circuit.opened", upstream, cooldown_s=self.cooldown, code=err.code if err
                                         else None))
                else:  # the upstream answered (a non-retryable failure is an answer too)
                    self.client.delete(key, f"{key}:probe", f"{key}:fails")
                    _transition("closed", skill, upstream, "the probe went through")
                    events.append(_event("circuit.closed", upstream))
            elif failed and self._fail(keys=[key, f"{key}:fails"], args=[
                    self.window_ms, self.threshold, str(time.time() + self.cooldown),
                    int(self.cooldown) + FORGET_AFTER_S]):
                _transition("opened", skill, upstream, f"{self.threshold} failures within the window "
                            f"(last: {err.code if err else ''})")
                events.append(_event("circuit.opened", upstream, cooldown_s=self.cooldown,
                                     code=err.code if err else None))
        except (redis.RedisError, OSError):
            self._unavailable()
        return events

    def _unavailable(self) -> None:
        now = time.monotonic()
        if now - self._warned > 60:  # once a minute at most: every step would say it
            self._warned = now
            log.warning("circuit breakers: Redis does not answer; breakers count as closed", exc_info=True)


def _event(type_: str, upstream: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "data": {"upstream": upstream, **data}}


def _transition(state: str, skill: str, upstream: str, why: str = "") -> None:
    metrics.circuit_transition(skill, state)
    log.warning("circuit %s %s: %s%s", skill, upstream, state, f" ({why})" if why else "")


def redis_url(settings: Settings) -> str | None:
    """Where the breakers' state lives: AOS_CIRCUIT_REDIS_URL, else a Redis broker; None: nowhere (off)."""
    return redis_py_url(settings.circuit_redis_url or settings.broker_url)


_breakers: tuple[int, Breakers | None] | None = None
_lock = threading.Lock()


def breakers() -> Breakers | None:
    """This process's breakers (None: turned off, or no Redis to share them through)."""
    global _breakers
    state = _breakers
    if state is not None and state[0] == id(get_settings()):
        return state[1]
    with _lock:
        settings = get_settings()
        url = redis_url(settings) if settings.circuit_failures > 0 else None
        made = Breakers(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), settings) \
            if url else None
        _breakers = (id(settings), made)
        return made
