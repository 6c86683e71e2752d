"""celery beat with leader election: of any number of beat processes, only the lease holder sends ticks.

Two beats happen (celery#2856, #4808: a deploy that starts the new beat before the
old one stops, a second host with the same Procfile, an operator's manual run).
Each tick, this scheduler takes or renews the ``aos.beat`` lease in Postgres
(``aos.services.locks``) before it sends anything; the others stand by, check
every few seconds, and the first to find the lease expired (its holder died or
lost the database for ``AOS_BEAT_LEASE_TTL_S``) takes over with a bigger fencing
token. A clean shutdown releases the lease so a standby takes over at once.

Ticks are not all the protection: each singleton job also takes its own lease
when it runs (``singleton`` in aos/tasks/beat.py) and user schedules are claimed
with ``SKIP LOCKED``, so even a leader that stalled past its lease and woke up
to send one stale tick cannot make a job run twice at the same time or a schedule
fire twice.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler

from aos import metrics
from aos.config import get_settings
from aos.db import scope
from aos.db.vocabulary import BEAT_LEASE
from aos.services.locks import Lease, acquire, new_holder, release

log = logging.getLogger(__name__)


class LeaderScheduler(PersistentScheduler):
    """PersistentScheduler that sends due entries only while it holds the beat lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        scope.set_process_default(scope.OPERATOR)  # beat's lease is deployment-wide (aos/db/scope.py)
        self._holder = new_holder("beat:")
        self._lease: Lease | None = None
        super().__init__(*args, **kwargs)

    def _lease_ttl(self) -> float:
        return float(get_settings().beat_lease_ttl_s)

    def _lead(self) -> bool:
        """Take or renew the lease; False (and nothing is sent) when another beat holds it or Postgres
        cannot be reached — a beat that cannot prove it leads must not send."""
        try:
            lease = acquire(BEAT_LEASE, self._holder, self._lease_ttl())
        except Exception as exc:  # noqa: BLE001 — database down: stand by until it is back
            log.warning("beat: cannot reach Postgres to renew leadership (%s: %s); standing by",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            lease = None
        if lease is None:
            if self._lease is not None:
                log.warning("beat %s: lost leadership (token %d); standing by", self._holder,
                            self._lease.fencing_token)
                metrics.lock_leadership(BEAT_LEASE, False)
            self._lease = None
            return False
        if self._lease is None or self._lease.fencing_token != lease.fencing_token:
            log.info("beat %s: leading (fencing token %d)", self._holder, lease.fencing_token)
            metrics.lock_leadership(BEAT_LEASE, True, acquired=True)
        self._lease = lease
        return True

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Renew well within the lease: never sleep longer than a third of it.
        cap = self._lease_ttl() / 3
        if not self._lead():
            return min(cap, 5.0)
        return min(super().tick(*args, **kwargs), cap)

    def close(self) -> None:
        if self._lease is not None:
            try:
                release(self._lease)
                log.info("beat %s: released leadership", self._holder)
            except Exception:  # noqa: BLE001 — it expires by itself
                log.warning("beat: could not release leadership; a standby takes over when it expires")
            metrics.lock_leadership(BEAT_LEASE, False)
            self._lease = None
        super().close()
