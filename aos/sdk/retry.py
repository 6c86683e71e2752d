"""When the SDK retries a request, and how long it waits: one policy for the sync and async clients.

- ``429`` and ``503`` are retried for every method: the server refused the request before doing
  anything (rate limit, unavailable database or broker), so sending it again cannot do the work twice.
- A connection that could not be opened is retried for every method (nothing was sent).
- Any other transport failure (read timeout, connection dropped mid-answer) is retried only for
  idempotent methods: a ``POST`` may have been processed.
- The wait honours ``Retry-After`` (seconds or an HTTP date); otherwise exponential backoff with full
  jitter, capped. A ``Retry-After`` longer than ``max_retry_after_s`` is not waited: the error is
  raised at once with its ``retry_after`` so the caller decides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# The request never left: safe to send again whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4             # every attempt, the first included; 1 = never retry
    backoff_s: float = 0.5            # first backoff ceiling; doubles per attempt
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0
    statuses: frozenset[int] = frozenset({429, 503})

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] after attempt ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def delay_after_status(self, attempt: int, status: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying after an error status, or None not to retry."""
        if attempt >= self.max_attempts or status not in self.statuses:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                return None
            # at least what the server asked, plus a little jitter so clients told the same don't stampede
            return retry_after + random.uniform(0, min(1.0, self.backoff_s))
        return self.backoff(attempt)

    def delay_after_error(self, attempt: int, method: str, exc: httpx.TransportError) -> float | None:
        """Seconds to wait before retrying after a transport error, or None not to retry."""
        if attempt >= self.max_attempts:
            return None
        if not isinstance(exc, _NOT_SENT) and method.upper() not in IDEMPOTENT_METHODS:
            return None
        return self.backoff(attempt)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
