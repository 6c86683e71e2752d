"""Requests that hold an API thread for long: live event streams and golden replays waiting for their run.

gunicorn's gthread worker has a fixed number of threads per process. A request that keeps its thread for
minutes (a server-sent event stream lives up to AOS_SSE_MAX_S) takes it from everyone else, so sixteen
streams of one key could leave no thread for /healthz or another tenant. Each long request takes a slot
here first: at most AOS_LONG_REQUESTS_PER_PROCESS at once in this process (below its thread count, so short
requests always find a thread) and AOS_LONG_REQUESTS_PER_KEY for one API key. Past either, the answer is
429 RATE_LIMITED with a Retry-After, at once. The counts are per process: with N API processes a key may
hold N times its share.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aos.config import get_settings
from aos.errors import AosError

RETRY_AFTER_S = 5


class LongRequests:
    """The slots of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_key: Counter[str] = Counter()
        self._total = 0

    def acquire(self, key: str, what: str) -> None:
        """Take a slot for ``key`` or raise RATE_LIMITED (429) saying which limit was hit."""
        settings = get_settings()
        with self._lock:
            if self._per_key[key] >= settings.long_requests_per_key:
                limit, scope = settings.long_requests_per_key, "per API key (AOS_LONG_REQUESTS_PER_KEY)"
            elif self._total >= settings.long_requests_per_process:
                limit, scope = settings.long_requests_per_process, "on this server (AOS_LONG_REQUESTS_PER_PROCESS)"
            else:
                self._per_key[key] += 1
                self._total += 1
                return
        raise AosError("RATE_LIMITED", f"at most {limit} {what} at once {scope}; close one, or retry in "
                       f"{RETRY_AFTER_S} s", details={"retry_after_s": RETRY_AFTER_S, "limit": limit})

    def release(self, key: str) -> None:
        with self._lock:
            if self._per_key[key] > 0:
                self._per_key[key] -= 1
                self._total -= 1
            if self._per_key[key] <= 0:
                del self._per_key[key]

    @contextmanager
    def held(self, key: str, what: str) -> Iterator[None]:
        self.acquire(key, what)
        try:
            yield
        finally:
            self.release(key)

    def active(self) -> int:
        return self._total

    def ticket(self, key: str, what: str) -> Ticket:
        """A slot for a response that outlives the view (a stream): give it back with ``Ticket.release``."""
        self.acquire(key, what)
        return Ticket(self, key)


class Ticket:
    """One held slot, released once however many of its owners say so."""

    def __init__(self, slots: LongRequests, key: str) -> None:
        self._slots, self._key, self._lock, self._held = slots, key, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._slots.release(self._key)

    def bind(self, response: Any) -> Any:
        """Release when the server closes the response (the stream ended or the client left) or, should nothing
        ever close it, when the response is collected."""
        response.call_on_close(self.release)
        weakref.finalize(response, self.release)
        return response


LONG_REQUESTS = LongRequests()
